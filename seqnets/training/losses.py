"""Classification losses and metrics on logits ``(..., classes)`` and int labels ``(...)``."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from seqnets.types import Array


def softmax_cross_entropy(logits: Array, labels: Array, mask: Array | None = None) -> Array:
    """Mean cross-entropy of ``logits (..., classes)`` against int ``labels (...)``.

    ``mask (...)`` weights each position (e.g. zero for padding); returns a scalar.
    """
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    if mask is None:
        return losses.mean()
    mask = mask.astype(jnp.float32)
    return (losses * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def accuracy(logits: Array, labels: Array, mask: Array | None = None) -> Array:
    """Share of positions where ``argmax(logits) == labels``; a scalar in [0, 1]."""
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    if mask is None:
        return correct.mean()
    mask = mask.astype(jnp.float32)
    return (correct * mask).sum() / jnp.maximum(mask.sum(), 1.0)
