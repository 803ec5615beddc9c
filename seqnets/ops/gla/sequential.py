"""Gated linear attention as one `jax.lax.scan` iteration per step (the recurrence of
`seqnets.ops.gla.naive`): O(T) iterations of O(K V) elementwise work each."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops._matrix import HIGHEST, sanitize, zero_invalid

Array = jax.Array


def sequential(q: Array, k: Array, v: Array, g: Array | None, *, scale: float,
               initial_state: Array, chunk_size: int, reset: Array | None,
               valid: Array | None) -> tuple[Array, Array]:
    """The registered ``"sequential"`` kernel; the family's signature (``chunk_size`` is
    unused). Returns ``(o (B, T, H, V), final_state (B, H, K, V))``."""
    del chunk_size
    q, k, v, g = sanitize(valid, q, k, v, g)
    xs = {"q": q * scale, "k": k, "v": v}
    if g is not None:
        xs["g"] = g if g.ndim == 4 else g[..., None]  # (B, T, H, K or 1)
    if reset is not None:
        xs["reset"] = reset

    def step(S, x):
        if "reset" in x:
            S = jnp.where(x["reset"][:, None, None, None], 0.0, S)
        if "g" in x:
            S = jnp.exp(x["g"])[..., None] * S
        S = S + x["k"][..., :, None] * x["v"][..., None, :]
        return S, jnp.einsum("bhkv,bhk->bhv", S, x["q"], precision=HIGHEST)

    # An invalid step's zeroed inputs (g = 0, k = 0) are the identity update.
    S, o = jax.lax.scan(step, initial_state, jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), xs))
    return zero_invalid(jnp.moveaxis(o, 0, 1), valid), S
