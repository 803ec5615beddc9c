"""Deterministic data order: each epoch's shuffle is derived from a key and the epoch."""

from __future__ import annotations

import jax
import numpy as np

from seqnets.types import Array


def epoch_permutation(key: Array, epoch: int, num_examples: int) -> np.ndarray:
    """The order of the examples in ``epoch``: a permutation of ``range(num_examples)``.

    A pure function of ``(key, epoch)``, so a resumed run sees the same batches.
    """
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num_examples))


def num_batches(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder of each shuffled epoch is dropped."""
    if batch_size < 1 or batch_size > num_examples:
        raise ValueError(
            f"batch_size must lie in [1, {num_examples}] (the number of examples); "
            f"got {batch_size}."
        )
    return num_examples // batch_size
