"""The echo task's data: a random bit stream cut into contiguous rows
(`seqnets.data.echo_streams`), trimmed to whole windows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seqnets.data import echo_streams

if TYPE_CHECKING:
    from experiments.echo.configs import Config


def series(config: Config, seed) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's rows, trimmed to whole windows as the tutorial does."""
    x, y = echo_streams(seed, series_length=config.series_length,
                        batch_size=config.batch_size, echo_step=config.echo_step)
    usable = x.shape[1] - x.shape[1] % config.window
    if usable == 0:
        raise ValueError(
            f"rows of {x.shape[1]} steps are shorter than one window of {config.window}: "
            "raise --series-length or lower --window / --batch-size."
        )
    return x[:, :usable], y[:, :usable]
