"""Normalisation over the features axis.

RMSNorm (Zhang and Sennrich, 2019), without a mean subtraction or a bias:

    rms_norm(x) = x / sqrt(mean(x ** 2 over the last axis) + eps) * scale
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.types import Array


def rms_norm(x: Array, scale: Array, eps: float = 1e-6) -> Array:
    """``x (..., features)`` divided by its root mean square over ``features``, times ``scale``.

    Args:
      x: any leading axes, the features last.
      scale: ``(features,)``, the learned gain (ones at initialisation).
      eps: added to the mean square, so that an all-zero ``x`` gives zeros, not NaN.

    Returns:
      An array of ``x``'s shape.
    """
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * scale
