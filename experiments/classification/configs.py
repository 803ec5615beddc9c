"""The options of the classification trainer (`experiments.classification.train`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax

from experiments import cli
from seqnets.parallel import check_batch_divides, data_mesh


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The options of `train_and_evaluate`; an experiment's config adds its model's and
    data's, and may give these other defaults."""

    epochs: cli.Count = 20
    """Passes over the training set."""
    batch_size: cli.Count = 128
    """Examples per train step."""
    learning_rate: cli.Positive = 1e-3
    """Peak Adam learning rate."""
    schedule: Literal["cosine", "constant", "warmup_cosine"] = "cosine"
    """Learning-rate schedule over all steps: cosine decay to 0, constant, or a linear
    warm-up over the first epoch followed by cosine decay."""
    clip_norm: cli.OptionalPositive = None
    """Clip gradients to this global norm (None: no clipping)."""
    seed: cli.Natural = 0
    """Seed of the initial parameters and of every epoch's shuffle."""
    workdir: str = "runs/classification"
    """Output directory: metrics, plot, results, checkpoints."""
    resume: bool = False
    """Continue the run saved in --workdir from its last checkpoint."""
    overwrite: bool = False
    """Start afresh even if --workdir holds a run (the old one is moved aside, not deleted)."""
    checkpoint_every: cli.Count = 500
    """Save a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: cli.Count = 3
    """How many recent checkpoints to keep."""
    smoke: bool = False
    """A quick run on a subset of the data (used by the tests)."""
    train_examples: cli.OptionalCount = None
    """Use only the first N training examples (default: all)."""
    test_examples: cli.OptionalCount = None
    """Evaluate on the first N test examples (default: all)."""
    progress: bool = True
    """Show a progress bar."""
    devices: int | None = None
    """Data-parallel over this many local devices (default: all; on a CPU host, run as a
    program, one device per core); the batch must divide."""


def check(config: TrainConfig) -> None:
    """Raises ValueError naming a bad option of the trainer's (`cli.check_options` checks
    every bound the config's fields declare)."""
    cli.check_options(config)
    if config.train_examples is not None and config.train_examples < config.batch_size:
        raise ValueError(
            f"--train-examples {config.train_examples} is less than one batch of "
            f"{config.batch_size}: raise it or lower --batch-size."
        )
    check_batch_divides(config.batch_size, data_mesh(config.devices, jax.local_devices()).size)
