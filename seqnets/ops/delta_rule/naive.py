"""The gated delta rule step by step, as Yang, Kautz & Hatamizadeh (Gated DeltaNet, ICLR
2025) write it; ``g = 0`` gives DeltaNet's delta rule (Yang et al. 2024). The reference
that the tests hold every kernel to: one `jax.lax.scan` iteration per step, nothing
rearranged.

Per batch row and head, with the state ``S`` of shape ``(K, V)``::

    S <- exp(g_t) * S
    u_t = beta_t * (v_t - S^T k_t)
    S <- S + k_t u_t^T
    o_t = S^T (scale * q_t)

A reset at t zeroes ``S`` before the step; an invalid step leaves ``S`` as it is and
outputs zeros.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops._matrix import HIGHEST, sanitize

Array = jax.Array


def naive_gated_delta_rule(q: Array, k: Array, v: Array, beta: Array, g: Array | None = None,
                           *, scale: float | None = None, initial_state: Array | None = None,
                           reset: Array | None = None,
                           valid: Array | None = None) -> tuple[Array, Array]:
    """The reference: ``q, k (B, T, H, K)``, ``v (B, T, H, V)``, ``beta, g (B, T, H)``,
    ``initial_state (B, H, K, V)``, ``reset, valid (B, T)`` bool.

    Returns ``(o (B, T, H, V), final_state (B, H, K, V))``.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    g = jnp.zeros((B, T, H), q.dtype) if g is None else g
    S = jnp.zeros((B, H, K, V), q.dtype) if initial_state is None else initial_state
    reset = jnp.zeros((B, T), bool) if reset is None else reset
    q, k, v, beta, g = sanitize(valid, q, k, v, beta, g)
    valid = jnp.ones((B, T), bool) if valid is None else valid

    def step(S, inputs):
        q_t, k_t, v_t, beta_t, g_t, reset_t, valid_t = inputs  # (B, H, .) and (B,)
        S = jnp.where(reset_t[:, None, None, None], 0.0, S)
        S_new = jnp.exp(g_t)[..., None, None] * S
        retrieved = jnp.einsum("bhkv,bhk->bhv", S_new, k_t, precision=HIGHEST)
        u_t = beta_t[..., None] * (v_t - retrieved)
        S_new = S_new + k_t[..., :, None] * u_t[..., None, :]
        o_t = jnp.einsum("bhkv,bhk->bhv", S_new, scale * q_t, precision=HIGHEST)
        S = jnp.where(valid_t[:, None, None, None], S_new, S)
        return S, jnp.where(valid_t[:, None, None], o_t, 0.0)

    time_major = [jnp.moveaxis(x, 1, 0) for x in (q, k, v, beta, g, reset, valid)]
    S, o = jax.lax.scan(step, S, time_major)
    return jnp.moveaxis(o, 0, 1), S
