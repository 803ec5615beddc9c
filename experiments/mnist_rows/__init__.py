"""MNIST read row by row: 28 steps of 28 pixels, a recurrent classifier on the last state.

    python -m experiments.mnist_rows                    # the default run, >= 99 % test accuracy
    python -m experiments.mnist_rows --smoke            # a quick check on a subset
    python -m experiments.mnist_rows --help             # every option

The defaults are the classic TensorFlow tutorial's set-up (LSTM 128, batch 128, Adam 1e-3,
head on the last hidden state) trained for enough epochs, with a cosine learning-rate decay.
Outputs in ``--workdir``: ``metrics.jsonl`` (one line per epoch), ``learning_curve.png``,
``results.json``, ``config.json`` and orbax checkpoints (``--resume`` continues a run).
Training, checkpoints and interrupts are the classification trainer's
(`experiments.classification`).

The package has the shape of Flax's examples: ``configs`` (the options and their checks),
``models`` (the network), ``train`` (the `experiments.classification.Task` and
``train_and_evaluate(config, workdir)``), ``main`` (the command line); MNIST's input
pipeline is `experiments.mnist_data`, shared with ``pixel_mnist``.
"""

from experiments.mnist_rows.configs import Config, effective, validate
from experiments.mnist_rows.main import main
from experiments.mnist_rows.models import init_params, logits_fn, make_model
from experiments.mnist_rows.train import task, train_and_evaluate

__all__ = ["Config", "effective", "init_params", "logits_fn", "main", "make_model", "task",
           "train_and_evaluate", "validate"]
