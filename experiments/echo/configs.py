"""The options of ``python -m experiments.echo`` and their checks."""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments import cli
from experiments.echo.input_pipeline import series
from experiments.echo.models import make_model


@dataclasses.dataclass(frozen=True)
class Config:
    """Echo a random binary stream with a recurrent network trained by truncated BPTT."""

    cell: Literal["elman", "lstm", "gru"] = "elman"
    """Recurrent cell (elman is the tutorial's tanh RNN)."""
    hidden_size: int = 4
    """State size per layer."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    series_length: cli.Count = 50_000
    """Bits in each epoch's series (before it is cut into rows)."""
    batch_size: cli.Count = 5
    """Rows (contiguous streams) the series is cut into."""
    window: cli.Count = 15
    """Steps per truncated-BPTT window (truncated_backprop_length)."""
    echo_step: cli.Count = 3
    """Delay of the echo in steps."""
    epochs: cli.Count = 100
    """Epochs, each on a fresh series, with the carry zeroed at its start."""
    learning_rate: cli.Positive = 0.3
    """Adagrad learning rate."""
    carry: Literal["both", "keep", "reset"] = "both"
    """keep: carry the state from each window into the next; reset: zero it at every
    window; both: train both and report the comparison."""
    loop: Literal["fused", "python"] = "fused"
    """fused: one compiled lax.scan over each epoch's windows; python: one jitted call per
    window."""
    seed: int = 0
    """Seed of the parameters and of every series."""
    workdir: str = "runs/echo"
    """Output directory: metrics, figures, results."""
    overwrite: bool = False
    """Start afresh even if --workdir holds a run (the old one is moved aside)."""
    smoke: bool = False
    """A quick run: 5,000-bit series, 5 epochs (used by the tests)."""
    progress: bool = True
    """Show a progress bar."""


SMOKE_SIZES = {"series_length": 5_000, "epochs": 5}


def effective(config: Config) -> Config:
    """The config with ``--smoke``'s sizes (each capped at its smoke value)."""
    return cli.with_smoke_sizes(config, SMOKE_SIZES)


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any training."""
    config = effective(config)
    make_model(config)  # hidden size, layers
    cli.check_options(config)
    series(config, [config.seed, 0])  # the rows must divide and hold a window
    return config
