"""Gated linear attention in chunks of C steps (Yang et al. 2024, "Gated Linear Attention
Transformers with Hardware-Efficient Training", section 4).

Within a chunk, with ``S_0`` the incoming state and ``G_r = g_1 + ... + g_r`` the
cumulative log-decays (per key, ``(C, K)``; every difference ``G_r - G_i`` is summed
from step ``i + 1`` on, `seqnets.ops._matrix.segment_sums`)::

    o_r = (q_r * exp(G_r))^T S_0 + sum_{i<=r} P[r, i] v_i,
    P[r, i] = sum_d q_rd k_id exp(G_rd - G_id)
    S_C = diag(exp(G_C)) S_0 + (K * exp(G_C - G))^T V

The states entering each chunk come from a loop of ``T / C`` elementwise updates; the
rest is batched matmuls over (batch, heads, chunks).

``P`` is never formed as ``(Q exp(G)) (K exp(-G))^T``: with strong decays ``exp(-G)``
overflows float32 (``g = -20`` a step overflows after 5 steps). `key_attention` splits the
chunk into blocks of ``sub`` steps (GLA's secondary chunking). A pair of steps in two
different blocks goes through the log-decay at the end of the block before the row's
block, ``ref``: ``exp(G_r - ref)`` and ``exp(ref - G_i)``, both exponents ``<= 0``, so
the factors can only underflow, where the true product is smaller still. A pair within
one block gets its decay ``exp(G_rd - G_id)`` formed elementwise, ``(sub, sub, K)`` a
block. One decay per head makes ``P = Q K^T * exp(G_r - G_i)``, a plain masked matmul.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops._matrix import (
    HIGHEST,
    causal,
    from_chunks,
    mm,
    mm_t,
    pair_decay,
    sanitize,
    segment_masks,
    segment_sums,
    suffix_sums,
    t_mm,
    to_chunks,
    zero_invalid,
)

Array = jax.Array

# Block size of the secondary chunking of per-key decays (`key_attention`).
SUB_BLOCK = 16


def sub_block(C: int, most: int = SUB_BLOCK) -> int:
    """The largest divisor of ``C`` up to ``most``."""
    return max(d for d in range(1, min(C, most) + 1) if C % d == 0)


def key_attention(q: Array, k: Array, g: Array, mask: Array, sub: int) -> Array:
    """``P[r, i] = sum_d q[r, d] k[i, d] exp(g[i+1, d] + ... + g[r, d])`` where
    ``mask[r, i]`` (a subset of ``i <= r``), else 0.

    Args:
      q, k, g: ``(..., L, K)``; ``g`` the log-decays.
      mask: ``(..., L, L)`` bool, broadcastable.
      sub: the block size; divides ``L``.

    Returns:
      ``(..., L, L)``.
    """
    L, K = q.shape[-2:]
    n = L // sub
    qb, kb, gb = (x.reshape(*x.shape[:-2], n, sub, K) for x in (q, k, g))
    # Pairs within a block: each key's decay formed elementwise, (..., n, K, sub, sub).
    inside = causal(sub)
    D = segment_sums(jnp.swapaxes(gb, -1, -2))
    decay = jnp.where(inside, jnp.exp(jnp.where(inside, D, 0.0)), 0.0)
    P_diag = jnp.einsum("...rd,...id,...dri->...ri", qb, kb, decay, precision=HIGHEST)
    if n == 1:  # one block: no earlier ones (and XLA:CPU in jaxlib 0.10.2 miscompiled
        # the all-zero off-diagonal product of this case at some shapes)
        return jnp.where(mask, P_diag.reshape(*q.shape[:-2], L, L), 0.0)
    # Pairs in earlier blocks, through the end of the block above the row's: the row's
    # decay since that point, and the key's decay up to it.
    q_ref = qb * jnp.exp(jnp.cumsum(gb, axis=-2))  # (..., n, sub, K)
    before = (jnp.arange(L)[None, :] < jnp.arange(0, L, sub)[:, None])[..., None]  # (n, L, 1)
    E = suffix_sums(jnp.where(before, g[..., None, :, :], 0.0), axis=-2)  # (..., n, L, K)
    k_ref = jnp.where(before, k[..., None, :, :] * jnp.exp(jnp.where(before, E, 0.0)), 0.0)
    P = mm_t(q_ref, k_ref).reshape(*q.shape[:-2], n, sub, n, sub)  # (..., n, sub, n, sub)
    # The diagonal blocks by a select: multiplying by an identity instead crashed
    # jaxlib 0.10.2's CPU backend (a segfault running the gradient of a single chunk).
    P = P + jnp.where(jnp.eye(n, dtype=bool)[:, None, :, None], P_diag[..., :, :, None, :], 0.0)
    return jnp.where(mask, P.reshape(*q.shape[:-2], L, L), 0.0)


def chunked(q: Array, k: Array, v: Array, g: Array | None, *, scale: float,
            initial_state: Array, chunk_size: int, reset: Array | None,
            valid: Array | None, sub: int | None = None) -> tuple[Array, Array]:
    """The registered ``"chunked"`` kernel; the family's signature. ``(o, final_state)``.

    ``sub``: the secondary block size of per-key decays (`sub_block` of the chunk size
    when None).
    """
    T = q.shape[1]
    C = chunk_size
    q, k, v, g = sanitize(valid, q, k, v, g)
    q, k, v = (to_chunks(x, C) for x in (q * scale, k, v))  # (B, H, N, C, .)
    seg = segment_masks(reset, C)
    lower = causal(C) if seg is None else causal(C) & seg.same
    if g is not None and g.ndim == 4:  # a log-decay per key
        g = to_chunks(g, C)  # (B, H, N, C, K)
        P = key_attention(q, k, g, lower, sub or sub_block(C))
        to_end = jnp.exp(suffix_sums(g, axis=-2))  # exp(G_C - G_i), (B, H, N, C, K)
        from_start = jnp.exp(jnp.cumsum(g, axis=-2))  # exp(G_r)
    else:  # one per head, or none
        g = None if g is None else to_chunks(g, C)[..., None]  # (B, H, N, C, 1)
        P = mm_t(q, k) * (lower if g is None else pair_decay(g[..., 0], lower))
        to_end = jnp.ones_like(q[..., :1]) if g is None else jnp.exp(suffix_sums(g, axis=-2))
        from_start = jnp.ones_like(q[..., :1]) if g is None else jnp.exp(jnp.cumsum(g, axis=-2))
    whole = from_start[..., -1, :]  # exp(G_C), (B, H, N, K or 1)
    if seg is not None:
        to_end = to_end * seg.last[..., None]
        from_start = from_start * seg.first[..., None]
        whole = whole * seg.whole[..., None]
    D = t_mm(k * to_end, v)  # (B, H, N, K, V): the chunk's own contribution to S_C

    def step(S, x):
        whole_n, D_n = x
        return whole_n[..., :, None] * S + D_n, S

    S, S_in = jax.lax.scan(step, initial_state,
                           (jnp.moveaxis(whole, 2, 0), jnp.moveaxis(D, 2, 0)))
    S_in = jnp.moveaxis(S_in, 0, 2)  # (B, H, N, K, V): the state entering each chunk
    o = mm(q * from_start, S_in) + mm(P, v)
    return zero_invalid(from_chunks(o, T), valid), S

