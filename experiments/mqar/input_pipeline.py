"""MQAR sequences for the experiment: one training set per run, a held-out set per grid
point, all drawn from seeds (the same for every cell, so the cells see the same data)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from experiments.classification import Data
from seqnets.data import IGNORE, mqar_examples

# Held-out sets are drawn from seeds far from the training set's.
TEST_SEED = 1_000_003


class GridPoint(NamedTuple):
    """One (sequence length, pairs) of the grid."""

    seq_len: int
    pairs: int


def grid(seq_lens: tuple[int, ...], pairs: tuple[int, ...]) -> list[GridPoint]:
    """Every (length, pairs) with ``4 * pairs <= length`` (the queries must fit)."""
    return [GridPoint(t, p) for t in sorted(seq_lens) for p in sorted(pairs) if 4 * p <= t]


def training_pairs(seq_lens: tuple[int, ...], pairs: tuple[int, ...]) -> list[int]:
    """The pair counts of the training mixture: those that fit the longest length."""
    return [p for p in sorted(pairs) if 4 * p <= max(seq_lens)]


def as_arrays(inputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(inputs, labels, mask)`` for the trainer: ignored labels become 0 with mask 0."""
    mask = labels != IGNORE
    return inputs, np.where(mask, labels, 0).astype(np.int32), mask.astype(np.float32)


def training_set(seq_lens: tuple[int, ...], pairs: tuple[int, ...], vocab_size: int,
                 examples: int, seed: int) -> tuple[np.ndarray, ...]:
    """``examples`` sequences of the longest length, in equal parts for each pair count of
    `training_pairs` (the parts' order is mixed by the trainer's shuffle).

    Returns ``(inputs (examples, T) int32, labels (examples, T) int32, mask (examples, T)
    float32)``: the loss is on the queries alone."""
    length, counts = max(seq_lens), training_pairs(seq_lens, pairs)
    sizes = [examples // len(counts) + (i < examples % len(counts)) for i in range(len(counts))]
    parts = [mqar_examples(n, seq_len=length, num_pairs=p, vocab_size=vocab_size,
                           seed=[seed, p]) for n, p in zip(sizes, counts, strict=True) if n]
    return as_arrays(np.concatenate([t.inputs for t in parts]),
                     np.concatenate([t.labels for t in parts]))


def test_sets(points: list[GridPoint], vocab_size: int, examples: int,
              seed: int) -> dict[GridPoint, tuple[np.ndarray, ...]]:
    """A held-out ``(inputs, labels, mask)`` of ``examples`` sequences per grid point."""
    return {pt: as_arrays(*mqar_examples(examples, seq_len=pt.seq_len, num_pairs=pt.pairs,
                                         vocab_size=vocab_size,
                                         seed=[TEST_SEED, seed, pt.seq_len, pt.pairs])[:2])
            for pt in points}


def load(seq_lens: tuple[int, ...], pairs: tuple[int, ...], vocab_size: int,
         train_examples: int, test_examples: int,
         seed: int) -> tuple[Data, dict[GridPoint, tuple[np.ndarray, ...]]]:
    """The trainer's `Data` (its test set: the grid points at the training length, whose
    masked mean accuracy the per-epoch log shows) and the held-out set of every grid
    point."""
    tests = test_sets(grid(seq_lens, pairs), vocab_size, test_examples, seed)
    length = max(seq_lens)
    at_length = [arrays for pt, arrays in tests.items() if pt.seq_len == length]
    data = Data(train=training_set(seq_lens, pairs, vocab_size, train_examples, seed),
                test=tuple(np.concatenate(a) for a in zip(*at_length, strict=True)),
                source=f"seqnets.data.mqar_examples (vocabulary {vocab_size}, seed {seed})")
    return data, tests
