"""The options of ``python -m experiments.mnist_rows`` and their checks."""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments import classification, mnist_data
from experiments.mnist_rows.models import make_model


@dataclasses.dataclass(frozen=True)
class Config(mnist_data.MnistConfig):
    """Row-by-row MNIST classification with a seqnets recurrent network.

    The training defaults are the trainer's (`experiments.classification.TrainConfig`):
    20 epochs of batch 128, Adam 1e-3 with a cosine decay, no clipping; images shifted
    by up to 2 pixels (`experiments.mnist_data`)."""

    cell: Literal["lstm", "gru", "elman"] = "lstm"
    """Recurrent cell of every layer."""
    hidden_size: int = 128
    """Hidden units per layer and direction."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    bidirectional: bool = False
    """Also read the rows bottom to top and concatenate both directions."""
    dropout: float = 0.0
    """Dropout rate between stacked layers (training only)."""
    workdir: str = "runs/mnist_rows"
    """Output directory: metrics, plot, results, checkpoints."""


effective = mnist_data.effective


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any data loads."""
    config = effective(config)
    make_model(config)  # hidden size, layers, dropout
    classification.check(config)
    return config
