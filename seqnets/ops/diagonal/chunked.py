"""The diagonal family's chunked kernel.

The T steps as ``n = T / C`` chunks of ``C``. One ``lax.scan`` of C steps runs every chunk
at once from a zero state (the chunk axis is batched) and keeps the cumulative products
``A_t = a_t * ... * a_first`` inside each chunk; one scan of n steps carries the state
across chunks, ``carry_{k+1} = A_end_k * carry_k + local_end_k``; then
``h = local + A * carry_in``. About ``C + n`` loop iterations instead of T, each doing
more work: it pays where the loop's per-iteration cost dominates (small batch and
width). Nothing divides by a cumulative product, so nothing overflows where ``a``
underflows.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from seqnets.types import Array


def default_chunk_size(time: int) -> int:
    """``ceil(sqrt(time))``: the chunk length that minimises ``C + T / C`` loop iterations."""
    return max(1, math.isqrt(max(time - 1, 0)) + 1) if time > 1 else 1


def chunked(a: Array, b: Array, h0: Array, *, chunk_size: int | None = None,
            unroll: int | bool = 1) -> tuple[Array, Array]:
    """``h_t = a_t * h_{t-1} + b_t`` in chunks of ``chunk_size`` steps (`default_chunk_size`
    when None; T need not be a multiple). Returns ``(hs (time, batch, ...), h_last)``."""
    del unroll
    a = jnp.broadcast_to(a, b.shape)
    time = a.shape[0]
    size = default_chunk_size(time) if chunk_size is None else chunk_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    size = min(size, time)
    chunks = -(-time // size)
    pad = chunks * size - time
    if pad:
        # Frozen steps (a = 1, b = 0) at the end change nothing before them; trimmed below.
        a = jnp.concatenate([a, jnp.ones_like(a[:pad])])
        b = jnp.concatenate([b, jnp.zeros_like(b[:pad])])
    # (chunks * C, ...) -> (C, chunks, ...): the inner scan runs every chunk at once.
    a_c = jnp.swapaxes(a.reshape(chunks, size, *a.shape[1:]), 0, 1)
    b_c = jnp.swapaxes(b.reshape(chunks, size, *b.shape[1:]), 0, 1)

    def local(state: tuple[Array, Array], ab: tuple[Array, Array]):
        h, prod = state
        a_t, b_t = ab
        h, prod = a_t * h + b_t, a_t * prod
        return (h, prod), (h, prod)

    # *_like, not jnp.zeros: inside shard_map the start must vary like the inputs, and b
    # does (a may not: the LRU's constant decay comes from the parameters alone).
    zeros, ones = jnp.zeros_like(b_c[0]), jnp.ones_like(b_c[0])
    (h_end, a_end), (h_local, a_cum) = jax.lax.scan(local, (zeros, ones), (a_c, b_c))

    def across(h: Array, ends: tuple[Array, Array]):
        a_k, h_k = ends
        return a_k * h + h_k, h  # emit the state entering chunk k

    h_last, carry_in = jax.lax.scan(across, h0, (a_end, h_end))
    hs = h_local + a_cum * carry_in[None]
    hs = jnp.swapaxes(hs, 0, 1).reshape(chunks * size, *a.shape[1:])
    return hs[:time], h_last
