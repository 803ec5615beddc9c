"""The classification trainer of the experiments (`mnist_rows`, `pixel_mnist`; MQAR next).

An experiment says what it trains (a `Task`: the parameters, the logits, the data) and
`train_and_evaluate` does the rest, the same way for every one of them:

- Adam with a learning-rate schedule over all steps (`make_schedule`), optionally after
  clipping the gradient's global norm, guarded by `seqnets.training.skip_nonfinite`;
- the cross-entropy of the logits against int labels, over every example or, for token
  classification, over the positions a mask selects (`Data`);
- one shuffle per epoch drawn from (seed, epoch), data parallel over the local devices;
- the test set evaluated after every epoch; ``metrics.jsonl``, ``learning_curve.png``,
  ``results.json``, ``config.json`` and orbax checkpoints in the workdir;
- a checkpoint every ``--checkpoint-every`` steps holding the train state and the running
  sums of the epoch in progress (so that a resumed epoch's train loss covers the whole
  epoch); an epoch's record is written before the checkpoint that ends it; SIGTERM or
  SIGINT saves at the next step and stops (`experiments.cli`). ``--resume`` continues to
  the parameters and metrics of an uninterrupted run, bit for bit.
"""

from experiments.classification.checkpoints import saved_tree
from experiments.classification.configs import TrainConfig, check
from experiments.classification.train import (
    Data,
    Task,
    evaluate,
    learning_rate,
    make_optimizer,
    make_steps,
    train_and_evaluate,
)

__all__ = [
    "Data",
    "Task",
    "TrainConfig",
    "check",
    "evaluate",
    "learning_rate",
    "make_optimizer",
    "make_steps",
    "saved_tree",
    "train_and_evaluate",
]
