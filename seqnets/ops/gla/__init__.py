"""Gated linear attention (family ``"gla"``): GLA (Yang et al. 2024) with a log-decay per
key, Mamba-2's SSD (Dao & Gu 2024) and RetNet with one per head, and causal linear
attention with none.

Per batch row and head, with the state ``S`` of shape ``(K, V)``::

    S <- diag(exp(g_t)) S + k_t v_t^T        (one decay per head: exp(g_t) * S + k_t v_t^T)
    o_t = S^T (scale * q_t)

Kernels (one signature, registered with `seqnets.ops.registry`)::

    fn(q, k, v, g, *, scale, initial_state, chunk_size, reset, valid) -> (o, S)

* ``"sequential"`` (`seqnets.ops.gla.sequential`): one scan iteration a step.
* ``"chunked"`` (`seqnets.ops.gla.chunked`): attention within chunks, states between.
* ``"parallel"`` (`seqnets.ops.gla.parallel`): the quadratic form over the whole sequence.

`seqnets.ops.gla.naive` is the step-by-step reference the tests use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqnets.ops import registry
from seqnets.ops._matrix import check_common, check_float32, resolve_scale
from seqnets.ops.gla import chunked, parallel, sequential
from seqnets.ops.gla.naive import naive_gated_linear_attention

Array = jax.Array

FAMILY = "gla"
# "auto": the quadratic form up to AUTO_PARALLEL_UPTO steps, chunks after. Train steps at
# B 4, 2 heads, K = V = 64 on a loaded 2-core CPU (`benchmarks/matrix_kernels.py`,
# benchmarks/results/matrix/): at T = 16 parallel 2.3 ms, sequential 3.5, chunked 34; at
# T = 64 with one decay per head parallel 1.8, chunked 7.6, sequential 46, and with a
# decay per key sequential 10.8, chunked 14, parallel 21; from T = 128 on chunked is the
# fastest with either decay.
AUTO_PARALLEL_UPTO = 16

# The public function below takes float32; the cells (`seqnets.cells.matrix`) also run
# the kernels in float64 under JAX's 64-bit mode (their state dtype), for gradient checks.
DTYPES = ["float32", "float64"]
registry.register(FAMILY, "sequential", sequential.sequential, dtypes=DTYPES)
registry.register(FAMILY, "chunked", chunked.chunked, dtypes=DTYPES)
registry.register(FAMILY, "parallel", parallel.parallel, dtypes=DTYPES)


def _auto(p: registry.Problem) -> str:
    return "parallel" if p.time <= AUTO_PARALLEL_UPTO else "chunked"


registry.register_auto(FAMILY, _auto)


def gated_linear_attention(q: Array, k: Array, v: Array, g: Array | None = None, *,
                           scale: float | None = None, initial_state: Array | None = None,
                           mode: str = "auto", chunk_size: int = 64,
                           reset: Array | None = None,
                           valid: Array | None = None) -> tuple[Array, Array]:
    """Gated linear attention over a sequence, in the layout of flash-linear-attention.

    Args:
      q, k: ``(batch, time, heads, K)`` float32.
      v: ``(batch, time, heads, V)``.
      g: log-decays, meant ``<= 0``: ``(batch, time, heads, K)`` one per key (GLA),
        ``(batch, time, heads)`` one per head (Mamba-2, RetNet), or None (no decay).
        Values are not checked: a positive ``g`` grows the state, computed as written
        while ``exp`` of its sums over a chunk (the whole sequence in ``"parallel"``)
        stays finite.
      scale: multiplies ``q``; ``K ** -0.5`` when None.
      initial_state: ``(batch, heads, K, V)``; zeros when None.
      mode: ``"sequential"``, ``"chunked"``, ``"parallel"`` or ``"auto"`` (parallel up
        to ``AUTO_PARALLEL_UPTO`` steps, chunked after).
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
    >>> from seqnets.ops import gated_linear_attention
    >>> B, T, H, K, V = 2, 100, 2, 16, 8
    >>> keys = jax.random.split(jax.random.key(0), 4)
    >>> q, k = (jax.random.normal(key, (B, T, H, K)) for key in keys[:2])
    >>> v = jax.random.normal(keys[2], (B, T, H, V))
    >>> g = jax.nn.log_sigmoid(jax.random.normal(keys[3], (B, T, H, K)) + 3.0)
    >>> o, S = gated_linear_attention(q, k, v, g, mode="chunked", chunk_size=32)
    >>> o.shape, S.shape
    ((2, 100, 2, 8), (2, 2, 16, 8))
    >>> o_par, S_par = gated_linear_attention(q, k, v, g, mode="parallel")
    >>> bool(jnp.allclose(o, o_par, atol=1e-4)), bool(jnp.allclose(S, S_par, atol=1e-4))
    (True, True)
    """
    where = "seqnets.ops.gated_linear_attention"
    B, T, H, K, V = check_common(where, q, k, v, initial_state=initial_state, reset=reset,
                                 valid=valid, chunk_size=chunk_size)
    if g is not None and tuple(jnp.shape(g)) not in ((B, T, H, K), (B, T, H)):
        raise ValueError(f"{where}: g must be (batch, time, heads, K) = {(B, T, H, K)} (a "
                         f"log-decay per key) or (batch, time, heads) = {(B, T, H)} (one per "
                         f"head); got {tuple(jnp.shape(g))}.")
    check_float32(where, q=q, k=k, v=v, g=g, initial_state=initial_state)
    scale = resolve_scale(where, scale, K)
    _, kernel = registry.resolve(FAMILY, mode, dtype=jnp.float32, time=T, batch=B,
                                 state=H * K * V, where=where)
    if initial_state is None:
        initial_state = jnp.zeros((B, H, K, V), jnp.float32)
    return kernel(q, k, v, g, scale=scale, initial_state=initial_state,
                  chunk_size=chunk_size, reset=reset, valid=valid)


__all__ = ["AUTO_PARALLEL_UPTO", "FAMILY",
           "gated_linear_attention", "naive_gated_linear_attention"]
