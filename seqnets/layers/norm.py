"""Normalisation over the features axis.

RMSNorm (Zhang and Sennrich, 2019), without a mean subtraction or a bias, and the layer
norm of Ba et al. (2016) without a bias:

    rms_norm(x) = x / sqrt(mean(x ** 2 over the last axis) + eps) * scale
    layer_norm(x) = (x - mean(x)) / sqrt(var(x) + eps) * scale
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


def layer_norm(x: Array, scale: Array, eps: float = 1e-5) -> Array:
    """``x (..., features)`` centred and divided by its standard deviation over
    ``features``, times ``scale``; no bias (xLSTM's pre-norms, after NX-AI's ``LayerNorm``).

    Args:
      x: any leading axes, the features last.
      scale: ``(features,)``, the learned gain (ones at initialisation).
      eps: added to the variance.

    Returns:
      An array of ``x``'s shape.
    """
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale
