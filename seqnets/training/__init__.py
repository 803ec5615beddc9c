"""Training: a pytree train state, jitted steps, losses, checkpoints, data order."""

from seqnets.training.checkpoint import Checkpointer
from seqnets.training.guard import NonFiniteError, SkipNonfiniteState, check_finite, skip_nonfinite
from seqnets.training.losses import accuracy, softmax_cross_entropy
from seqnets.training.order import epoch_permutation, num_batches
from seqnets.training.state import TrainState, create_train_state
from seqnets.training.step import gradient_update, make_eval_step, make_train_step, train_step_fn

__all__ = [
    "Checkpointer",
    "NonFiniteError",
    "SkipNonfiniteState",
    "TrainState",
    "accuracy",
    "check_finite",
    "create_train_state",
    "epoch_permutation",
    "gradient_update",
    "make_eval_step",
    "make_train_step",
    "num_batches",
    "skip_nonfinite",
    "softmax_cross_entropy",
    "train_step_fn",
]
