"""Gated linear attention step by step, as Yang et al. 2024 ("Gated Linear Attention
Transformers with Hardware-Efficient Training") write it, with a log-decay per key; one
decay per head is Mamba-2's SSD (Dao & Gu 2024) and RetNet's form; no decay is causal
linear attention. The reference that the tests hold every kernel to: one
`jax.lax.scan` iteration per step, nothing rearranged.

Per batch row and head, with the state ``S`` of shape ``(K, V)``::

    S <- diag(exp(g_t)) S + k_t v_t^T      (g_t of shape (K,); per head: exp(g_t) * S)
    o_t = S^T (scale * q_t)

A reset at t zeroes ``S`` before the step; an invalid step leaves ``S`` as it is and
outputs zeros.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops._matrix import HIGHEST, sanitize

Array = jax.Array


def naive_gated_linear_attention(q: Array, k: Array, v: Array, g: Array | None = None, *,
                                 scale: float | None = None,
                                 initial_state: Array | None = None,
                                 reset: Array | None = None,
                                 valid: Array | None = None) -> tuple[Array, Array]:
    """The reference: ``q, k (B, T, H, K)``, ``v (B, T, H, V)``, ``g (B, T, H, K)`` or
    ``(B, T, H)`` or None, ``initial_state (B, H, K, V)``, ``reset, valid (B, T)`` bool.

    Returns ``(o (B, T, H, V), final_state (B, H, K, V))``.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    g = jnp.zeros((B, T, H), q.dtype) if g is None else g
    if g.ndim == 3:  # one decay per head: the same for every key
        g = jnp.broadcast_to(g[..., None], (B, T, H, K))
    S = jnp.zeros((B, H, K, V), q.dtype) if initial_state is None else initial_state
    reset = jnp.zeros((B, T), bool) if reset is None else reset
    q, k, v, g = sanitize(valid, q, k, v, g)
    valid = jnp.ones((B, T), bool) if valid is None else valid

    def step(S, inputs):
        q_t, k_t, v_t, g_t, reset_t, valid_t = inputs  # (B, H, .) and (B,)
        S = jnp.where(reset_t[:, None, None, None], 0.0, S)
        S_new = jnp.exp(g_t)[..., :, None] * S + k_t[..., :, None] * v_t[..., None, :]
        o_t = jnp.einsum("bhkv,bhk->bhv", S_new, scale * q_t, precision=HIGHEST)
        S = jnp.where(valid_t[:, None, None, None], S_new, S)
        return S, jnp.where(valid_t[:, None, None], o_t, 0.0)

    time_major = [jnp.moveaxis(x, 1, 0) for x in (q, k, v, g, reset, valid)]
    S, o = jax.lax.scan(step, S, time_major)
    return jnp.moveaxis(o, 0, 1), S
