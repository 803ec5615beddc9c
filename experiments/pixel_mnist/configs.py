"""The options of ``python -m experiments.pixel_mnist`` and their checks."""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments import classification, cli, mnist_data, models
from experiments.pixel_mnist.models import PIXELS, make_model


@dataclasses.dataclass(frozen=True)
class Config(mnist_data.MnistConfig):
    """Pixel-by-pixel MNIST (784 steps) with a seqnets recurrent network."""

    # The run's own training defaults (the options are the trainer's and MNIST's).
    epochs: cli.Count = 4
    batch_size: cli.Count = 64
    learning_rate: cli.Positive = 3e-3
    schedule: Literal["cosine", "constant", "warmup_cosine"] = "warmup_cosine"
    clip_norm: cli.OptionalPositive = 1.0
    augment_shift: cli.Natural = 0
    workdir: str = "runs/pixel_mnist"

    cell: Literal["min_gru", "min_lstm", "lru", "rg_lru", "lstm", "gru", "elman"] = "min_gru"
    """Recurrent cell of every block (or layer, with --model stack)."""
    model: Literal["residual", "stack"] = "residual"
    """residual: blocks of norm, recurrence and gated MLP; stack: plain stacked layers."""
    hidden_size: int = 64
    """Model width (residual) or hidden units per layer (stack). The default fits the run
    in an hour on a 2-core CPU (see docs/pixel_mnist.md)."""
    num_layers: int = 2
    """Residual blocks, or stacked layers."""
    bidirectional: bool = False
    """With --model stack: also read the pixels last to first, and concatenate both
    directions."""
    dropout: float = 0.0
    """With --model stack: dropout rate between stacked layers (training only)."""
    mode: Literal["auto", "sequential", "chunked", "parallel"] = "auto"
    """How seqnets.scan evaluates a linear cell (classic cells: auto or sequential)."""
    chunk_size: int | None = None
    """Chunk length for --mode chunked, 1 to 784 (default: about sqrt(784)); only with
    --mode chunked."""
    permute: bool = False
    """psMNIST: read the pixels in one fixed order drawn from --permutation-seed."""
    permutation_seed: int = 92916
    """Seed of the fixed pixel permutation (--permute)."""


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any data loads."""
    config = mnist_data.effective(config)
    make_model(config)  # sizes, layers, dropout
    classification.check(config)
    if config.model == "residual" and (config.bidirectional or config.dropout):
        raise ValueError("--bidirectional and --dropout apply to --model stack only; the "
                         "residual model has neither.")
    linear = models.CELLS[config.cell](1).family == "diagonal"
    if config.mode in ("chunked", "parallel") and not linear:
        raise ValueError(
            f"--mode {config.mode} needs a linear recurrent cell (min_gru, min_lstm, lru, "
            f"rg_lru); --cell {config.cell} runs only with --mode auto or sequential."
        )
    if config.chunk_size is not None:
        if config.mode != "chunked":
            raise ValueError(
                f"--chunk-size {config.chunk_size} is used only with --mode chunked (this run "
                f"is --mode {config.mode}); drop --chunk-size or pass --mode chunked."
            )
        if not 1 <= config.chunk_size <= PIXELS:
            raise ValueError(f"--chunk-size must lie in [1, {PIXELS}] (the sequence has "
                             f"{PIXELS} steps); got {config.chunk_size}.")
    return config
