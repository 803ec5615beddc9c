"""The diagonal family: ``h_t = a_t * h_{t-1} + b_t``, elementwise.

minGRU, minLSTM, the LRU, the RG-LRU and Mamba's S6 are this family: their carry update
is linear in the carry with coefficients that depend on the input only. Three kernels
share one signature, ``kernel(a, b, h0, *, chunk_size, unroll) -> (hs, h_last)`` on
time-major arrays (``a``, ``b``: ``(time, batch, ...)``, ``h0``: ``(batch, ...)``, any
trailing axes; ``a`` may be any shape that broadcasts to ``b``'s), forward in time:

* ``sequential`` (`seqnets.ops.diagonal.sequential`): one ``lax.scan`` step per time step.
* ``chunked`` (`seqnets.ops.diagonal.chunked`): chunks of C steps, about ``C + T / C``
  loop iterations.
* ``parallel`` (`seqnets.ops.diagonal.parallel`): ``jax.lax.associative_scan``.

``naive.py`` is the step-by-step reference that the tests compare them with. Masks are
coefficients (`fold_masks`): a reset is ``a = 0``, a padded (frozen) step ``a = 1, b = 0``,
so no kernel needs a special case. ``"auto"`` picks the sequential kernel on the CPU: in
one interleaved run on the project's 2-core CPU (minGRU, batch 64, width 128, train steps
at T = 16, 64, 256 and 784; LRU at 784) it was the fastest at every T, 1.4-2.4x the
chunked and 1.1-1.9x the parallel mode, and again in workload D at T = 784, 4,096 and
16,384 (``docs/benchmarks.md``). On accelerators it picks the parallel kernel, whose
``O(log T)`` depth suits them; that choice is not measured here (no device).
"""

from __future__ import annotations

import jax.numpy as jnp

from seqnets.ops import registry
from seqnets.ops.diagonal.chunked import chunked, default_chunk_size
from seqnets.ops.diagonal.parallel import parallel
from seqnets.ops.diagonal.sequential import sequential
from seqnets.ops.registry import Problem, ScanMode
from seqnets.types import Array

FAMILY = "diagonal"

registry.register(FAMILY, ScanMode.SEQUENTIAL, sequential)
registry.register(FAMILY, ScanMode.CHUNKED, chunked)
registry.register(FAMILY, ScanMode.PARALLEL, parallel)


def auto(problem: Problem) -> ScanMode:
    """The measured rule: sequential on the CPU, parallel elsewhere (see the module doc)."""
    return ScanMode.SEQUENTIAL if problem.platform == "cpu" else ScanMode.PARALLEL


registry.register_auto(FAMILY, auto)


def fold_masks(
    a: Array, b: Array, valid: Array | None, reset: Array | None
) -> tuple[Array, Array]:
    """Folds resets (``a = 0``) and padded steps (``a = 1, b = 0``) into the coefficients.

    ``valid`` and ``reset`` are bool ``(time, batch)``; ``a`` and ``b`` ``(time, batch, ...)``
    (``a`` is broadcast to ``b``'s shape where a mask applies). ``jnp.where`` selects, so a
    NaN in a masked-out coefficient never reaches the result.
    """
    def rows(mask: Array) -> Array:
        return mask.reshape(mask.shape + (1,) * (b.ndim - 2))

    if reset is not None:
        a = jnp.where(rows(reset), jnp.zeros_like(a), a)
    if valid is not None:
        a = jnp.where(rows(valid), a, jnp.ones_like(a))
        b = jnp.where(rows(valid), b, jnp.zeros_like(b))
    return a, b


def linear_recurrence(
    a: Array,
    b: Array,
    h0: Array,
    *,
    mode: ScanMode | str = ScanMode.SEQUENTIAL,
    chunk_size: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
) -> Array:
    """Every state of ``h_t = a_t * h_{t-1} + b_t``, from ``h_{-1} = h0``.

    Args:
      a: ``(time, batch, state)`` (any trailing axes), float or complex, or any shape that
        broadcasts to ``b``'s. An ``a`` without its own time axis (``(state,)``, say, for a
        decay that is the same at every step) is not materialised over time by the
        sequential mode: its scan reads it as a constant.
      b: ``(time, batch, state)``, the shape of the result.
      h0: ``(batch, state)``, the state before the first step.
      mode: ``"auto"``, a `ScanMode` or its value; `seqnets.ops.registry` resolves it.
      chunk_size: the chunk length C of the chunked mode; `default_chunk_size` when None.
        Ignored by the other modes. T need not be a multiple of C.
      reverse: run from the last step to the first, ``h_t = a_t * h_{t+1} + b_t`` with
        ``h_T = h0``; the result keeps the original time order.
      unroll: passed to the sequential mode's ``lax.scan``.

    Returns:
      ``hs``, ``(time, batch, state)``: the state after each step, in ``b``'s dtype
      promoted with ``a``'s and ``h0``'s.

        >>> import jax.numpy as jnp
        >>> from seqnets.ops.diagonal import linear_recurrence
        >>> linear_recurrence(jnp.full((3, 1, 1), 0.5), jnp.ones((3, 1, 1)), jnp.zeros((1, 1)))[:, 0, 0]
        Array([1.  , 1.5 , 1.75], dtype=float32)
    """
    dtype = jnp.result_type(a, b, h0)
    a, b, h0 = jnp.asarray(a, dtype), jnp.asarray(b, dtype), jnp.asarray(h0, dtype)
    if b.ndim < 1 or b.shape[1:] != h0.shape or not _broadcasts(a.shape, b.shape):
        raise ValueError(
            f"linear_recurrence: b must be (time, *h0.shape) = "
            f"(time, {', '.join(map(str, h0.shape))}) and a that shape or one that "
            f"broadcasts to it; got a {a.shape}, b {b.shape}."
        )
    time = b.shape[0]
    _, kernel = registry.resolve(FAMILY, mode, dtype=dtype, time=time, batch=h0.shape[0],
                                 state=h0.size // max(h0.shape[0], 1),
                                 where="linear_recurrence")
    if time == 0:
        return b
    if reverse:
        a = a[::-1] if a.ndim == b.ndim and a.shape[0] == time else a
        return kernel(a, b[::-1], h0, chunk_size=chunk_size, unroll=unroll)[0][::-1]
    return kernel(a, b, h0, chunk_size=chunk_size, unroll=unroll)[0]


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    try:
        return jnp.broadcast_shapes(shape, to) == to
    except ValueError:
        return False


__all__ = ["FAMILY", "chunked", "default_chunk_size", "fold_masks", "linear_recurrence",
           "parallel", "sequential"]
