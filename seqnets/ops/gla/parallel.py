"""Gated linear attention in its quadratic, attention-like form over the whole sequence::

    o_r = (q_r * exp(G_r))^T S_0 + sum_{i<=r} P[r, i] v_i,
    P[r, i] = sum_d q_rd k_id exp(G_rd - G_id)

with ``G`` the cumulative log-decays from the first step. It is `seqnets.ops.gla.chunked`
with a single chunk holding every step: no loop at all, O(T^2 (K + V)) work with one
decay per head or none, and O(T^2 K / PARALLEL_BLOCK + T K PARALLEL_BLOCK) more memory
for the per-key decays' blocks (`seqnets.ops.gla.chunked.key_attention`). For short
sequences.
"""

from __future__ import annotations

import jax

from seqnets.ops.gla.chunked import chunked

Array = jax.Array

# Block size of the per-key decays over the whole sequence: larger than the chunked
# kernel's, since the off-diagonal blocks' memory grows as T^2 / PARALLEL_BLOCK.
PARALLEL_BLOCK = 32


def parallel(q: Array, k: Array, v: Array, g: Array | None, *, scale: float,
             initial_state: Array, chunk_size: int, reset: Array | None,
             valid: Array | None) -> tuple[Array, Array]:
    """The registered ``"parallel"`` kernel; the family's signature (``chunk_size`` is
    unused). Returns ``(o (B, T, H, V), final_state (B, H, K, V))``."""
    del chunk_size
    T = q.shape[1]
    sub = min(PARALLEL_BLOCK, T)
    length = -(-T // sub) * sub  # T padded up to a multiple of the block
    return chunked(q, k, v, g, scale=scale, initial_state=initial_state, chunk_size=length,
                   reset=reset, valid=valid, sub=sub)
