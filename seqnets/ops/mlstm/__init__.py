"""The mLSTM of xLSTM (Beck et al. 2024; "xLSTM 7B" and "Tiled Flash Linear Attention",
2025): a matrix memory with exponential input gates and a stabiliser state.

Per batch row and head, with ``q_t, k_t (K,)``, ``v_t (V,)`` and scalar gate
pre-activations ``i_t, f_t``::

    log_f = log_sigmoid(f_t);   m_t = max(log_f + m_{t-1}, i_t)
    f' = exp(log_f + m_{t-1} - m_t);   i' = exp(i_t - m_t)
    C_t = f' C_{t-1} + i' k_t v_t^T;   n_t = f' n_{t-1} + i' k_t
    q' = q_t * K ** -0.5
    h_t = (q'^T C_t) / (max(|q'^T n_t|, exp(-m_t)) + eps)

the semantics of NX-AI's ``mlstm_kernels`` native JAX recurrent step, with the state
``m`` of shape ``(B, H)``. ``C`` and ``n`` are kept scaled by ``exp(-m_t)``: the
unscaled sums of ``exp(i_s)`` overflow float32 from ``i_s`` near 89, while every weight
of the scaled ones is at most 1 (`mlstm_chunked`'s module says why the scaling is exact).

Kernels (family ``"mlstm"`` in `seqnets.ops.registry`), one signature::

    fn(q, k, v, i, f, *, initial_state, eps, chunk_size, reset, valid) -> (h, (C, n, m))

* ``"sequential"`` (`mlstm_sequential`): one `lax.scan` iteration a step;
* ``"chunked"`` (`mlstm_chunked`): one iteration a chunk of ``chunk_size`` steps, each
  chunk's outputs by a masked quadratic form (the default: faster at every length measured).

``naive.py`` holds the step-by-step reference the tests compare them with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from seqnets.ops import registry
from seqnets.ops.mlstm.chunked import mlstm_chunked
from seqnets.ops.mlstm.naive import State, mlstm_naive, mlstm_step, zeros_state
from seqnets.ops.mlstm.sequential import mlstm_sequential
from seqnets.ops.registry import ScanMode

__all__ = ["mlstm", "mlstm_chunked", "mlstm_naive", "mlstm_sequential", "mlstm_step",
           "zeros_state"]

FAMILY = "mlstm"


def _auto(problem: registry.Problem) -> ScanMode:
    # Measured on XLA:CPU (train steps, benchmarks/results/xlstm/crossover.md, B 4, H 4,
    # K = V = 64): chunked was the faster at every length tried, 1.7x at T = 1 (0.30 against
    # 0.51 ms) and 7-31x from T = 2 to 256; its loop takes one iteration a chunk, the
    # sequential one an iteration a step. At B 1, H 1, K = V = 16, T = 1: 0.09 against
    # 0.10 ms. Not measured on GPU or TPU.
    del problem
    return ScanMode.CHUNKED


registry.register(FAMILY, ScanMode.SEQUENTIAL, mlstm_sequential)
registry.register(FAMILY, ScanMode.CHUNKED, mlstm_chunked)
registry.register_auto(FAMILY, _auto)


def mlstm(q: Array, k: Array, v: Array, i: Array, f: Array, *,
          initial_state: State | None = None, eps: float = 1e-6, mode: str = "auto",
          chunk_size: int = 64, reset: Array | None = None, valid: Array | None = None,
          ) -> tuple[Array, State]:
    """The mLSTM over a sequence: outputs and final state.

    Args:
      q, k: queries and keys, ``(batch, time, heads, K)``.
      v: values, ``(batch, time, heads, V)``.
      i, f: input and forget gate pre-activations, ``(batch, time, heads)``.
      initial_state: ``(C (batch, heads, K, V), n (batch, heads, K), m (batch, heads))``;
        zeros when None.
      eps: added to the denominator of ``h``.
      mode: ``"auto"``, ``"sequential"`` or ``"chunked"``; every mode gives the same
        result to float32 rounding.
      chunk_size: steps a chunk in mode ``"chunked"``; ``time`` need not be a multiple.
      reset: ``(batch, time)`` bool or None. True at ``t``: the state entering step ``t``
        is the zero state ``(0, 0, 0)``, as if a new sequence started there.
      valid: ``(batch, time)`` bool or None. False at ``t``: step ``t`` leaves the state
        unchanged, and its inputs (NaN allowed) reach neither outputs nor gradients;
        its output is finite but meaningless. Where both are set, the reset comes first.

    Returns:
      ``(h, (C, n, m))``: ``h`` is ``(batch, time, heads, V)``; the state after the last
      step has the shapes of ``initial_state``. Computed in float32, or float64 if an
      input is.

    Raises:
      ValueError: for inputs or states of mismatched shapes, masks that are not
        ``(batch, time)`` booleans, a ``chunk_size`` below 1, or an unknown ``mode``.

    >>> import jax
    >>> from seqnets.ops import mlstm
    >>> B, T, H, K, V = 2, 20, 2, 4, 3
    >>> ks = jax.random.split(jax.random.key(0), 5)
    >>> q, k = (jax.random.normal(s, (B, T, H, K)) for s in ks[:2])
    >>> v = jax.random.normal(ks[2], (B, T, H, V))
    >>> i, f = (3 * jax.random.normal(s, (B, T, H)) for s in ks[3:])
    >>> h, (C, n, m) = mlstm(q, k, v, i, f, chunk_size=8)  # mode "auto": chunked
    >>> h.shape, C.shape, n.shape, m.shape
    ((2, 20, 2, 3), (2, 2, 4, 3), (2, 2, 4), (2, 2))
    >>> first = mlstm(q[:, :10], k[:, :10], v[:, :10], i[:, :10], f[:, :10], chunk_size=8)
    >>> h2, _ = mlstm(q[:, 10:], k[:, 10:], v[:, 10:], i[:, 10:], f[:, 10:],
    ...               initial_state=first[1], chunk_size=8)
    >>> bool(abs(h2 - h[:, 10:]).max() < 1e-4 * abs(h).max())  # the state carries on
    True
    """
    q, k, v, i, f = (jnp.asarray(x) for x in (q, k, v, i, f))
    B, T, H, K, V = _check_shapes(q, k, v, i, f)
    dtype = jnp.promote_types(jnp.result_type(q, k, v, i, f), jnp.float32)
    if initial_state is None:
        initial_state = zeros_state(B, H, K, V, dtype)
    initial_state = _check_state(initial_state, B, H, K, V)
    reset, valid = (_check_mask(x, name, B, T) for x, name in ((reset, "reset"), (valid, "valid")))
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"seqnets.ops.mlstm: chunk_size must be a positive int; got {chunk_size!r}.")
    _, kernel = registry.resolve(FAMILY, mode, dtype=dtype, time=T, batch=B,
                                 state=H * (K * V + K + 1), where="seqnets.ops.mlstm")
    q, k, v, i, f = (x.astype(dtype) for x in (q, k, v, i, f))
    initial_state = tuple(s.astype(dtype) for s in initial_state)
    return _jitted(kernel)(q, k, v, i, f, initial_state=initial_state, eps=eps,
                           chunk_size=chunk_size, reset=reset, valid=valid)


@functools.cache
def _jitted(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` compiled as a whole, so that a call outside `jax.jit` does not run it op
    by op; inside a jitted function it is inlined."""
    return jax.jit(kernel, static_argnames=("chunk_size",))


def _check_shapes(q: Array, k: Array, v: Array, i: Array, f: Array) -> tuple[int, ...]:
    if q.ndim != 4:
        raise ValueError(f"seqnets.ops.mlstm: q must be (batch, time, heads, K); got shape "
                         f"{q.shape}. A single head needs its axis: q[:, :, None].")
    B, T, H, K = q.shape
    expected = {"k": (B, T, H, K), "i": (B, T, H), "f": (B, T, H)}
    for name, x in (("k", k), ("i", i), ("f", f)):
        if x.shape != expected[name]:
            raise ValueError(f"seqnets.ops.mlstm: {name} must have shape {expected[name]} to "
                             f"match q {q.shape}; got {x.shape}.")
    if v.ndim != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"seqnets.ops.mlstm: v must be (batch, time, heads, V) = "
                         f"({B}, {T}, {H}, V) to match q {q.shape}; got {v.shape}.")
    for name, x in zip("qkvif", (q, k, v, i, f), strict=True):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"seqnets.ops.mlstm: {name} must be floating point; got {x.dtype}.")
    return B, T, H, K, v.shape[3]


def _check_state(state: State, B: int, H: int, K: int, V: int) -> State:
    shapes = ((B, H, K, V), (B, H, K), (B, H))
    if not isinstance(state, tuple | list) or len(state) != 3:
        raise ValueError("seqnets.ops.mlstm: initial_state must be a tuple (C, n, m) of shapes "
                         f"{shapes}; got {type(state).__name__}.")
    state = tuple(jnp.asarray(s) for s in state)
    for name, s, shape in zip("Cnm", state, shapes, strict=True):
        if s.shape != shape:
            raise ValueError(f"seqnets.ops.mlstm: initial_state's {name} must have shape "
                             f"{shape} (C (B, H, K, V), n (B, H, K), m (B, H)); got {s.shape}.")
    return state


def _check_mask(mask: Array | None, name: str, B: int, T: int) -> Array | None:
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.shape != (B, T):
        raise ValueError(f"seqnets.ops.mlstm: {name} must have shape (batch, time) = "
                         f"{(B, T)}; got {mask.shape}.")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"seqnets.ops.mlstm: {name} must be booleans; got dtype {mask.dtype}. "
                         f"Pass {name}.astype(bool).")
    return mask
