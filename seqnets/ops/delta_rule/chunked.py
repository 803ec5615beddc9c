"""The gated delta rule in chunks of C steps: the WY (UT) form of Yang et al. 2024
("Parallelizing Linear Transformers with the Delta Rule over Sequence Length") with the
gates of Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025).

Within a chunk, with ``S_0`` the incoming state, ``G_r = g_1 + ... + g_r`` and
``gamma_r = exp(G_r)``, every state is ``S_r = gamma_r S_0 + sum_{i<=r} exp(G_r - G_i)
k_i u_i^T``. Putting that into ``u_r = beta_r (v_r - exp(g_r) S_{r-1}^T k_r)`` gives a
unit lower-triangular system for the rows ``u_r`` of ``U (C, V)``::

    (I + A) U = diag(beta) V - diag(beta gamma) K S_0,
    A[r, i] = beta_r exp(G_r - G_i) k_r . k_i   (i < r)

so, with ``T = (I + A)^-1`` (`invert_unit_lower`), ``W = T diag(beta gamma) K`` and
``U' = T diag(beta) V``, ``U = U' - W S_0``. Then, with ``K~ = diag(exp(G_C - G)) K``::

    S_C = (gamma_C I - K~^T W) S_0 + K~^T U'          (one matmul a chunk: the scan)
    O = diag(gamma) Q S_0 + (Q K^T * exp(G_r - G_i) [i <= r]) U

Everything but the ``S_C`` line is computed for all chunks at once, as batched matmuls
over (batch, heads, chunks); only the ``(K, K) @ (K, V)`` product runs in a loop of
``T / C`` iterations. A reset inside a chunk masks the pairs it separates
(`seqnets.ops._matrix.Segments`), never ``-inf`` in a cumulative sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops._matrix import (
    causal,
    from_chunks,
    mm,
    mm_t,
    pair_decay,
    sanitize,
    segment_masks,
    suffix_sums,
    t_mm,
    to_chunks,
    zero_invalid,
)
from seqnets.varying import vary_like

Array = jax.Array

# Diagonal blocks of (I + A) inverted by forward substitution, then merged by the
# 2 x 2 block formula (`invert_unit_lower`).
SUBSTITUTION_BLOCK = 16


def invert_unit_lower(A: Array, block: int = SUBSTITUTION_BLOCK) -> Array:
    """``(I + A)^-1`` for strictly lower-triangular ``A (..., C, C)``.

    Blocked forward substitution: each ``block x block`` diagonal block is inverted row by
    row (``X[i] = e_i - A[i, :i] X[:i]``, exact to rounding, as the step-by-step
    recurrence), then neighbouring blocks are merged level by level with
    ``[[L1, 0], [L21, L2]]^-1 = [[X1, 0], [-X2 L21 X1, X2]]``: two matmuls a merge.
    ``C`` that is not ``block`` times a power of two is substituted row by row whole.

    Not the product form ``(I - A)(I + A^2)(I + A^4)...`` (``2 log2 C`` matmuls): with
    correlated unit keys (``k_t . k_s ~ 0.9``) the powers of ``A`` grow large and cancel,
    and at C = 64 its float32 inverse was off by 1e5 where this one's error stayed 2e-7
    (entries of size 1); with independent keys both erred 1e-7, and its train step was
    1.2x slower (B 4, T 2,048, 2 heads, K 64).
    """
    C = A.shape[-1]
    levels = 0
    while block * 2 ** levels < C:
        levels += 1
    if block * 2 ** levels != C:
        block, levels = C, 0
    batch = A.shape[:-2]
    n = C // block
    # The diagonal blocks, (..., n, block, block).
    diag = jnp.stack([A[..., j * block:(j + 1) * block, j * block:(j + 1) * block]
                      for j in range(n)], axis=-3)
    eye = jnp.eye(block, dtype=A.dtype)

    def substitute(i, X):  # row i of the inverse from the rows above it
        a_i = jax.lax.dynamic_slice_in_dim(diag, i, 1, axis=-2)  # (..., n, 1, block)
        row = jax.lax.dynamic_slice_in_dim(eye, i, 1, axis=0) - mm(a_i, X)
        return jax.lax.dynamic_update_slice_in_dim(X, row, i, axis=-2)

    # Under shard_map the loop's carry must vary over the mesh axes as diag does.
    X = jax.lax.fori_loop(1, block, substitute, vary_like(jnp.broadcast_to(eye, diag.shape), diag))
    size = block
    while size < C:  # merge pairs of neighbouring diagonal blocks
        X = X.reshape(*batch, -1, 2, size, size)
        X1, X2 = X[..., 0, :, :], X[..., 1, :, :]
        L21 = jnp.stack([A[..., s + size:s + 2 * size, s:s + size] for s in range(0, C, 2 * size)],
                        axis=-3)
        lower = -mm(X2, mm(L21, X1))
        top = jnp.concatenate([X1, jnp.zeros_like(X1)], axis=-1)
        bottom = jnp.concatenate([lower, X2], axis=-1)
        X = jnp.concatenate([top, bottom], axis=-2)
        size *= 2
    return X.reshape(*batch, C, C)


def chunked(q: Array, k: Array, v: Array, beta: Array, g: Array | None, *, scale: float,
            initial_state: Array, chunk_size: int, reset: Array | None,
            valid: Array | None) -> tuple[Array, Array]:
    """The registered ``"chunked"`` kernel; the family's signature. ``(o, final_state)``."""
    T, K = q.shape[1], q.shape[3]
    C = chunk_size
    q, k, v, beta, g = sanitize(valid, q, k, v, beta, g)
    q, k, v, beta = (to_chunks(x, C) for x in (q * scale, k, v, beta))  # (B, H, N, C, .)
    g = None if g is None else to_chunks(g, C)  # (B, H, N, C)
    seg = segment_masks(reset, C)

    lower = causal(C) if seg is None else causal(C) & seg.same
    decay = lower.astype(q.dtype) if g is None else pair_decay(g, lower)  # exp(G_r - G_i)
    gamma = jnp.ones_like(beta) if g is None else jnp.exp(jnp.cumsum(g, axis=-1))
    tail = jnp.ones_like(beta) if g is None else jnp.exp(suffix_sums(g))  # exp(G_C - G_i)
    gamma_C = gamma[..., -1]
    if seg is not None:
        gamma = gamma * seg.first
        tail = tail * seg.last
        gamma_C = gamma_C * seg.whole

    strict = decay * (1.0 - jnp.eye(C, dtype=q.dtype))
    A = beta[..., :, None] * strict * mm_t(k, k)
    Tinv = invert_unit_lower(A)
    W = mm(Tinv, (beta * gamma)[..., None] * k)  # (B, H, N, C, K)
    U0 = mm(Tinv, beta[..., None] * v)  # (B, H, N, C, V)
    k_tail = tail[..., None] * k
    M = gamma_C[..., None, None] * jnp.eye(K, dtype=q.dtype) - t_mm(k_tail, W)  # (.., K, K)
    D = t_mm(k_tail, U0)  # (B, H, N, K, V)

    def step(S, md):
        M_n, D_n = md
        return mm(M_n, S) + D_n, S

    S, S_in = jax.lax.scan(step, initial_state, (jnp.moveaxis(M, 2, 0), jnp.moveaxis(D, 2, 0)))
    S_in = jnp.moveaxis(S_in, 0, 2)  # (B, H, N, K, V): the state entering each chunk
    U = U0 - mm(W, S_in)
    o = gamma[..., None] * mm(q, S_in) + mm(mm_t(q, k) * decay, U)
    return zero_invalid(from_chunks(o, T), valid), S
