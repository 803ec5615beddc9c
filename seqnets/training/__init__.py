"""Training: a pytree train state, jitted steps, losses, checkpoints, data order."""

from seqnets.training.checkpoint import Checkpointer
from seqnets.training.losses import accuracy, softmax_cross_entropy
from seqnets.training.order import epoch_permutation, num_batches
from seqnets.training.state import TrainState, create_train_state
from seqnets.training.step import (
    NonFiniteLossError,
    check_finite,
    make_eval_step,
    make_train_step,
    train_step_fn,
)

__all__ = [
    "Checkpointer",
    "NonFiniteLossError",
    "TrainState",
    "accuracy",
    "check_finite",
    "create_train_state",
    "epoch_permutation",
    "make_eval_step",
    "make_train_step",
    "num_batches",
    "softmax_cross_entropy",
    "train_step_fn",
]
