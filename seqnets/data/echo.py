"""The echo task: a random binary stream that must be repeated ``echo_step`` steps later."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def echo_streams(
    seed: int | Sequence[int],
    *,
    series_length: int = 50_000,
    batch_size: int = 5,
    echo_step: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """One series of random bits cut into ``batch_size`` contiguous rows, and its echo.

    As in the classic "Echo-RNN" tutorial: ``y = roll(x, echo_step)`` with the first
    ``echo_step`` targets set to 0, then both reshaped to ``(batch_size, -1)``. The first
    ``echo_step`` targets of each row echo the end of the previous row, which that row's
    own stream cannot know.

    Args:
      seed: seed (or seed sequence) of NumPy's generator; same seed, same bits.
      series_length: total number of bits; must be a multiple of ``batch_size``.
      batch_size: number of rows (streams).
      echo_step: delay of the echo in steps.

    Returns:
      ``(x, y)``, int32 arrays ``(batch_size, series_length // batch_size)`` of 0s and 1s.
    """
    if series_length % batch_size:
        raise ValueError(
            f"series_length ({series_length}) must be a multiple of batch_size ({batch_size})."
        )
    if not 0 < echo_step < series_length // batch_size:
        raise ValueError(
            f"echo_step must lie in [1, {series_length // batch_size - 1}] (the row length "
            f"minus one); got {echo_step}."
        )
    x = np.random.default_rng(seed).integers(0, 2, series_length, dtype=np.int32)
    y = np.roll(x, echo_step)
    y[:echo_step] = 0
    return x.reshape(batch_size, -1), y.reshape(batch_size, -1)
