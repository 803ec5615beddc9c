"""The diagonal family's parallel kernel: ``jax.lax.associative_scan``, depth ``O(log T)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.types import Array


def combine(first: tuple[Array, Array], second: tuple[Array, Array]) -> tuple[Array, Array]:
    """Composes two affine maps, ``first`` then ``second``; resets (a = 0) compose to a = 0."""
    a1, b1 = first
    a2, b2 = second
    return a1 * a2, a2 * b1 + b2


def parallel(a: Array, b: Array, h0: Array, *, chunk_size: int | None = None,
             unroll: int | bool = 1) -> tuple[Array, Array]:
    """``h_t = a_t * h_{t-1} + b_t`` by an associative scan of the affine maps ``(a_t, b_t)``.

    ``chunk_size`` and ``unroll`` are ignored. Returns ``(hs (time, batch, ...), h_last)``.
    """
    del chunk_size, unroll
    a = jnp.broadcast_to(a, b.shape)
    # The initial state folds into the first step: b_0 += a_0 * h0.
    b = b.at[0].add(a[0] * h0)
    hs = jax.lax.associative_scan(combine, (a, b))[1]
    return hs, hs[-1]
