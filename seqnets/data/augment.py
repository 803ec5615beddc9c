"""Image augmentation for sequence models that read images row by row."""

from __future__ import annotations

import numpy as np


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translates each image by up to ``max_shift`` pixels along each axis, filling with 0.

    Args:
      images: ``(batch, height, width)``, any dtype.
      max_shift: the largest shift in pixels; 0 returns ``images`` unchanged.
      rng: the generator that draws each image's shift (seed it for a deterministic run).

    Returns:
      ``(batch, height, width)``, same dtype.
    """
    if max_shift == 0:
        return images
    if images.ndim != 3:
        raise ValueError(f"random_shift expects (batch, height, width); got shape {images.shape}.")
    batch, height, width = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, batch))
    rows = dy[:, None] + np.arange(height)[None, :]  # (batch, height)
    cols = dx[:, None] + np.arange(width)[None, :]  # (batch, width)
    return padded[np.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]]
