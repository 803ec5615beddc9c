"""The gated delta rule (family ``"delta_rule"``): DeltaNet (Yang et al. 2024) and Gated
DeltaNet (Yang, Kautz & Hatamizadeh, ICLR 2025).

Per batch row and head, with the state ``S`` of shape ``(K, V)``::

    S <- exp(g_t) * S
    u_t = beta_t * (v_t - S^T k_t)
    S <- S + k_t u_t^T
    o_t = S^T (scale * q_t)

Kernels (one signature, registered with `seqnets.ops.registry`)::

    fn(q, k, v, beta, g, *, scale, initial_state, chunk_size, reset, valid) -> (o, S)

* ``"sequential"`` (`seqnets.ops.delta_rule.sequential`): one scan iteration a step.
* ``"chunked"`` (`seqnets.ops.delta_rule.chunked`): the WY form, ``T / C`` iterations.

`seqnets.ops.delta_rule.naive` is the step-by-step reference the tests use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops import registry
from seqnets.ops._matrix import (
    check_common,
    check_float32,
    check_shape,
    resolve_scale,
)
from seqnets.ops.delta_rule import chunked, sequential
from seqnets.ops.delta_rule.naive import naive_gated_delta_rule

Array = jax.Array

FAMILY = "delta_rule"
# "auto" picks the chunked kernel from this many steps on. Train steps at B 4, 2 heads,
# K = V = 64 on a loaded 2-core CPU (`benchmarks/matrix_kernels.py`,
# benchmarks/results/matrix/): T = 16 sequential 12 ms, chunked 33; T = 32 chunked 22,
# sequential 47; T = 64 chunked 6.5, sequential 66; T = 2,048 chunked 3.4x faster.
AUTO_CHUNKED_FROM = 32

# The public function below takes float32; the cells (`seqnets.cells.matrix`) also run
# the kernels in float64 under JAX's 64-bit mode (their state dtype), for gradient checks.
DTYPES = ["float32", "float64"]
registry.register(FAMILY, "sequential", sequential.sequential, dtypes=DTYPES)
registry.register(FAMILY, "chunked", chunked.chunked, dtypes=DTYPES)
registry.register_auto(
    FAMILY, lambda p: "chunked" if p.time >= AUTO_CHUNKED_FROM else "sequential")


def gated_delta_rule(q: Array, k: Array, v: Array, beta: Array, g: Array | None = None, *,
                     scale: float | None = None, initial_state: Array | None = None,
                     mode: str = "auto", chunk_size: int = 64, reset: Array | None = None,
                     valid: Array | None = None) -> tuple[Array, Array]:
    """The gated delta rule over a sequence, in the layout of flash-linear-attention.

    Args:
      q, k: ``(batch, time, heads, K)`` float32. ``k`` is used as given (no
        normalisation); the recurrence is stable while ``beta_t |k_t|^2`` lies in
        ``[0, 2]``, e.g. L2-normalised keys and ``beta`` in ``[0, 1]``.
      v: ``(batch, time, heads, V)``.
      beta: ``(batch, time, heads)``, the writing strengths.
      g: ``(batch, time, heads)`` log-decays, meant ``<= 0`` (values are not checked: a
        positive ``g`` grows the state, computed as written while ``exp`` of its sums over
        a chunk stays finite); None means 0, DeltaNet's delta rule.
      scale: multiplies ``q``; ``K ** -0.5`` when None.
      initial_state: ``(batch, heads, K, V)``; zeros when None.
      mode: ``"sequential"``, ``"chunked"`` or ``"auto"`` (chunked from
        ``AUTO_CHUNKED_FROM`` steps on).
      chunk_size: steps per chunk of the chunked kernel; any T (the last chunk is padded
        inside).
      reset: ``(batch, time)`` bool; True at t drops the state entering step t (from
        ``initial_state`` or the earlier steps), as if a sequence starts at t.
      valid: ``(batch, time)`` bool; False at t leaves the state unchanged by step t and
        gives a zero output there. The inputs of such a step may hold NaN.

    Returns:
      ``(o, final_state)``: ``o (batch, time, heads, V)`` and ``(batch, heads, K, V)``.

    Raises:
      ValueError: for a shape, dtype, mode or chunk size that does not fit.

    >>> import jax, jax.numpy as jnp
    >>> from seqnets.ops import gated_delta_rule
    >>> B, T, H, K, V = 2, 100, 2, 16, 8
    >>> keys = jax.random.split(jax.random.key(0), 5)
    >>> q = jax.random.normal(keys[0], (B, T, H, K))
    >>> k = jax.random.normal(keys[1], (B, T, H, K))
    >>> k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    >>> v = jax.random.normal(keys[2], (B, T, H, V))
    >>> beta = jax.nn.sigmoid(jax.random.normal(keys[3], (B, T, H)))
    >>> g = jax.nn.log_sigmoid(jax.random.normal(keys[4], (B, T, H)) + 3.0)
    >>> o, S = gated_delta_rule(q, k, v, beta, g, mode="chunked", chunk_size=32)
    >>> o.shape, S.shape
    ((2, 100, 2, 8), (2, 2, 16, 8))
    >>> o_seq, S_seq = gated_delta_rule(q, k, v, beta, g, mode="sequential")
    >>> bool(jnp.allclose(o, o_seq, atol=1e-5)), bool(jnp.allclose(S, S_seq, atol=1e-5))
    (True, True)
    """
    where = "seqnets.ops.gated_delta_rule"
    B, T, H, K, V = check_common(where, q, k, v, initial_state=initial_state, reset=reset,
                                 valid=valid, chunk_size=chunk_size)
    check_shape(where, "beta", beta, (B, T, H), "(batch, time, heads)")
    check_shape(where, "g", g, (B, T, H), "(batch, time, heads): one log-decay per head")
    check_float32(where, q=q, k=k, v=v, beta=beta, g=g, initial_state=initial_state)
    scale = resolve_scale(where, scale, K)
    _, kernel = registry.resolve(FAMILY, mode, dtype=jnp.float32, time=T, batch=B,
                                 state=H * K * V, where=where)
    if initial_state is None:
        initial_state = jnp.zeros((B, H, K, V), jnp.float32)
    return kernel(q, k, v, beta, g, scale=scale, initial_state=initial_state,
                  chunk_size=chunk_size, reset=reset, valid=valid)


__all__ = ["AUTO_CHUNKED_FROM", "FAMILY", "gated_delta_rule",
           "naive_gated_delta_rule"]
