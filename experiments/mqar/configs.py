"""The options of ``python -m experiments.mqar`` and their checks."""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments import classification, cli
from experiments.mqar.models import CELLS

# --full: Zoology's grid (sequence lengths 64-256, 4-64 pairs) at the same recipe.
FULL_SEQ_LENS = (64, 128, 256)
FULL_PAIRS = (4, 8, 16, 32, 64)
SMOKE_SIZES = {"epochs": 1, "train_examples": 64, "test_examples": 32}


@dataclasses.dataclass(frozen=True)
class Config(classification.TrainConfig):
    """Multi-query associative recall (Zoology's MQAR): for each cell, a 2-layer model
    (recurrence, then a gated MLP, each with pre-norm and residual) trained on a mixture
    of pair counts at one sequence length, and its query accuracy on held-out sequences
    of every (sequence length, pairs) of the grid.

    The recipe is the same for every cell (docs/mqar.md says why): Adam at 3e-3 with a
    linear warm-up over the first epoch and a cosine decay to 0, gradients clipped to
    norm 1, batch 32, 6 epochs of 8,192 sequences (1,536 steps)."""

    epochs: cli.Count = 6
    batch_size: cli.Count = 32
    learning_rate: cli.Positive = 3e-3
    schedule: Literal["cosine", "constant", "warmup_cosine"] = "warmup_cosine"
    clip_norm: cli.OptionalPositive = 1.0
    checkpoint_every: cli.Count = 200
    workdir: str = "runs/mqar"

    cells: tuple[str, ...] = CELLS
    """The cells to train, one model each, in this order."""
    width: cli.Count = 64
    """Model width: every block's input, recurrence output and residual stream."""
    num_layers: cli.Count = 2
    """Residual blocks."""
    vocab_size: cli.Count = 64
    """Tokens: keys from the first half, values from the second (Zoology: 8,192)."""
    seq_lens: tuple[int, ...] = (64,)
    """Sequence lengths of the grid; each cell trains at the largest."""
    pairs: tuple[int, ...] = (4, 8, 16)
    """Key-value pairs of the grid; training mixes them in equal parts (those that fit in
    the training length: 4 * pairs <= length)."""
    full: bool = False
    """Zoology's grid: lengths 64, 128 and 256, and 4 to 64 pairs (replaces --seq-lens
    and --pairs, and --vocab-size becomes 256 so that 64 keys fit). About 80-100 minutes
    on 2 cores, and with this recipe (6 epochs) no cell measured learnt at length 256:
    see docs/mqar.md."""
    train_examples: cli.OptionalCount = 8192
    """Training sequences per cell (drawn once, the same for every cell)."""
    test_examples: cli.OptionalCount = 512
    """Held-out sequences per (length, pairs) of the grid."""
    smoke: bool = False
    """A quick run (used by the tests): 1 epoch of 64 sequences, 32 held out."""
    data_seed: cli.Natural = 0
    """Seed of the training and test sequences (held out: seeds apart from training's)."""


def effective(config: Config) -> Config:
    """The config with ``--full``'s grid and ``--smoke``'s sizes filled in."""
    if config.full:
        config = dataclasses.replace(config, seq_lens=FULL_SEQ_LENS, pairs=FULL_PAIRS,
                                     vocab_size=max(config.vocab_size, 256))
    return cli.with_smoke_sizes(config, SMOKE_SIZES)


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any data loads."""
    config = effective(config)
    classification.check(config)
    unknown = [c for c in config.cells if c not in CELLS]
    if unknown or not config.cells:
        raise ValueError(f"--cells {' '.join(config.cells) or '(none)'}: each must be one of "
                         f"{', '.join(CELLS)}.")
    if len(set(config.cells)) != len(config.cells):
        raise ValueError(f"--cells names a cell twice: {' '.join(config.cells)}.")
    for name, values in (("seq-lens", config.seq_lens), ("pairs", config.pairs)):
        if not values or any(v < 1 for v in values):
            raise ValueError(f"--{name} needs one or more positive ints; got {values}.")
    if all(4 * p > t for t in config.seq_lens for p in config.pairs):
        raise ValueError(f"no (length, pairs) of the grid fits: MQAR needs 4 * pairs <= "
                         f"length; got --seq-lens {config.seq_lens} --pairs {config.pairs}.")
    if max(config.pairs) >= config.vocab_size // 2:
        raise ValueError(f"--pairs {max(config.pairs)} needs that many distinct keys among "
                         f"the {config.vocab_size // 2 - 1} of --vocab-size "
                         f"{config.vocab_size}: raise --vocab-size to at least "
                         f"{2 * max(config.pairs) + 2}.")
    return config
