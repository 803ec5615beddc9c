"""Evaluation orders of a linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (elementwise).

Three kernels with one contract, `linear_recurrence`, on time-major arrays:

* **sequential**: one ``lax.scan`` over the T elementwise steps.
* **chunked**: the T steps as ``n = T / C`` chunks of ``C``. One ``lax.scan`` of C steps
  runs every chunk at once from a zero state (the chunk axis is batched) and keeps the
  cumulative products ``A_t = a_t * ... * a_first`` inside each chunk; one scan of n
  steps carries the state across chunks, ``carry_{k+1} = A_end_k * carry_k + local_end_k``;
  then ``h = local + A * carry_in``. About ``C + n`` loop iterations instead of T, each
  doing more work: it pays where the loop's per-iteration cost dominates (small batch
  and width); at batch 64, width 128 the sequential scan was faster on the CPU.
* **parallel**: ``jax.lax.associative_scan`` with the combine
  ``(a1, b1), (a2, b2) -> (a1 * a2, a2 * b1 + b2)``, depth ``O(log T)``.

None divides by a cumulative product, so none can overflow where ``a`` underflows. Resets
and padding need no special case: a reset before step t is ``a_t = 0``, a padded (frozen)
step is ``a_t = 1, b_t = 0``, and every kernel handles those like any other coefficient.

`linear_scan` runs a linear `Cell` over a sequence with these kernels: project every step,
compute ``(a, b)``, fold the masks, run the kernel, read out.
"""

from __future__ import annotations

import enum
import math

import jax
import jax.numpy as jnp

from seqnets.cells.base import Array, Carry, Cell, Params


class ScanMode(enum.Enum):
    """How `seqnets.scan` evaluates a recurrence over time."""

    SEQUENTIAL = "sequential"
    CHUNKED = "chunked"
    PARALLEL = "parallel"


MODES = ("auto", *(m.value for m in ScanMode))


def resolve_mode(
    mode: str | ScanMode,
    cell: Cell,
    time: int,
    batch: int,
    state: int,
    backend: str | None = None,
) -> ScanMode:
    """The `ScanMode` that `seqnets.scan` uses for ``cell`` on a ``(time, batch, state)`` run.

    A classic cell (``cell.linear is None``) accepts only ``"auto"`` and ``"sequential"``.
    For a linear cell, ``"auto"`` picks SEQUENTIAL on the CPU: in one interleaved run on
    the project's 2-core CPU (minGRU, batch 64, width 128, train steps at T = 16, 64, 256
    and 784; LRU at 784), the sequential scan was the fastest at every T, 1.4-2.4x the
    chunked and 1.1-1.9x the parallel mode, and again in workload D at T = 784, 4,096 and
    16,384, for minGRU and the LRU (docs/benchmarks.md). At that width each step
    is enough work that the loop's per-iteration cost does not dominate, and the other
    modes do more arithmetic and move more memory. On accelerators it picks PARALLEL,
    whose ``O(log T)`` depth suits them; that choice is not measured here (no device).

    Args:
      mode: ``"auto"``, ``"sequential"``, ``"chunked"``, ``"parallel"`` or a `ScanMode`.
      cell: the cell to run.
      time: the run's number of steps.
      batch: its batch size.
      state: the carry's width.
      backend: ``jax.default_backend()`` when None.

    Returns:
      A `ScanMode`.

    Raises:
      ValueError: for an unknown mode, or a mode other than ``"auto"``/``"sequential"``
        for a cell that is not linear.
    """
    del time, batch, state  # The rule measured so far depends on the backend only.
    if isinstance(mode, ScanMode):
        name = mode.value
    elif isinstance(mode, str) and mode in MODES:
        name = mode
    else:
        raise ValueError(f"seqnets.scan: mode must be one of {MODES}; got {mode!r}.")
    if cell.linear is None:
        if name not in ("auto", "sequential"):
            raise ValueError(
                f"seqnets.scan: the {cell.name!r} cell is not linear in its carry, so it "
                f"runs only in modes ('auto', 'sequential'); got mode={name!r}. Chunked and "
                "parallel modes need a cell built with seqnets.cells.make_linear_cell."
            )
        return ScanMode.SEQUENTIAL
    if name != "auto":
        return ScanMode(name)
    backend = jax.default_backend() if backend is None else backend
    return ScanMode.SEQUENTIAL if backend == "cpu" else ScanMode.PARALLEL


def default_chunk_size(time: int) -> int:
    """``ceil(sqrt(time))``: the chunk length that minimises ``C + T / C`` loop iterations."""
    return max(1, math.isqrt(max(time - 1, 0)) + 1) if time > 1 else 1


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
      mode: a `ScanMode` or its value (not ``"auto"``: see `resolve_mode`).
      chunk_size: the chunk length C of the chunked mode; `default_chunk_size` when None.
        Ignored by the other modes. T need not be a multiple of C.
      reverse: run from the last step to the first, ``h_t = a_t * h_{t+1} + b_t`` with
        ``h_T = h0``; the result keeps the original time order.
      unroll: passed to the sequential mode's ``lax.scan``.

    Returns:
      ``hs``, ``(time, batch, state)``: the state after each step, in ``b``'s dtype
      promoted with ``a``'s and ``h0``'s.
    """
    mode = ScanMode(mode) if isinstance(mode, str) else mode
    dtype = jnp.result_type(a, b, h0)
    a, b, h0 = jnp.asarray(a, dtype), jnp.asarray(b, dtype), jnp.asarray(h0, dtype)
    if b.shape[1:] != h0.shape or not _broadcasts(a.shape, b.shape):
        raise ValueError(
            f"linear_recurrence: b must be (time, *h0.shape) = "
            f"(time, {', '.join(map(str, h0.shape))}) and a that shape or one that "
            f"broadcasts to it; got a {a.shape}, b {b.shape}."
        )
    if b.shape[0] == 0:
        return b
    if mode is ScanMode.SEQUENTIAL:
        return _sequential(a, b, h0, reverse, unroll)
    a = jnp.broadcast_to(a, b.shape)
    if mode is ScanMode.PARALLEL:
        return _parallel(a, b, h0, reverse)
    if mode is ScanMode.CHUNKED:
        if reverse:
            return _chunked(a[::-1], b[::-1], h0, chunk_size)[::-1]
        return _chunked(a, b, h0, chunk_size)
    raise ValueError(f"linear_recurrence: unknown mode {mode!r}.")


def _sequential(a: Array, b: Array, h0: Array, reverse: bool, unroll: int | bool) -> Array:
    # An a that is the same at every step is a constant of the scan, not one of its inputs:
    # it is never broadcast over time, and its gradient is summed in the backward scan's
    # carry instead of being stored for every step.
    constant = a.ndim < b.ndim or a.shape[0] == 1
    a_const = (a[0] if a.ndim == b.ndim else a) if constant else None

    def body(h: Array, step: Array | tuple[Array, Array]) -> tuple[Array, Array]:
        a_t, b_t = (a_const, step) if constant else step
        h = a_t * h + b_t
        return h, h

    xs = b if constant else (a, b)
    return jax.lax.scan(body, h0, xs, reverse=reverse, unroll=unroll)[1]


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    try:
        return jnp.broadcast_shapes(shape, to) == to
    except ValueError:
        return False


def _combine(first: tuple[Array, Array], second: tuple[Array, Array]) -> tuple[Array, Array]:
    """Composes two affine maps: ``first`` then ``second``; resets (a = 0) compose to a = 0."""
    a1, b1 = first
    a2, b2 = second
    return a1 * a2, a2 * b1 + b2


def _parallel(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    # Fold the initial state into the first step processed: b_first += a_first * h0.
    first = -1 if reverse else 0
    b = b.at[first].add(a[first] * h0)
    # With reverse=True the scan runs on the flipped sequence: _combine still receives the
    # step processed first as its first argument.
    return jax.lax.associative_scan(_combine, (a, b), reverse=reverse)[1]


def _chunked(a: Array, b: Array, h0: Array, chunk_size: int | None) -> Array:
    time = a.shape[0]
    size = default_chunk_size(time) if chunk_size is None else chunk_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    size = min(size, time)
    chunks = -(-time // size)
    pad = chunks * size - time
    if pad:
        # Frozen steps (a = 1, b = 0) at the end change nothing before them; trimmed below.
        a = jnp.concatenate([a, jnp.ones_like(a[:pad])])
        b = jnp.concatenate([b, jnp.zeros_like(b[:pad])])
    # (chunks * C, ...) -> (C, chunks, ...): the inner scan runs every chunk at once.
    a_c = jnp.swapaxes(a.reshape(chunks, size, *a.shape[1:]), 0, 1)
    b_c = jnp.swapaxes(b.reshape(chunks, size, *b.shape[1:]), 0, 1)

    def local(state: tuple[Array, Array], ab: tuple[Array, Array]):
        h, prod = state
        a_t, b_t = ab
        h, prod = a_t * h + b_t, a_t * prod
        return (h, prod), (h, prod)

    # *_like, not jnp.zeros: inside shard_map the start must vary like the inputs, and b
    # does (a may not: the LRU's constant decay comes from the parameters alone).
    zeros, ones = jnp.zeros_like(b_c[0]), jnp.ones_like(b_c[0])
    (h_end, a_end), (h_local, a_cum) = jax.lax.scan(local, (zeros, ones), (a_c, b_c))

    def across(h: Array, ends: tuple[Array, Array]):
        a_k, h_k = ends
        return a_k * h + h_k, h  # emit the state entering chunk k

    _, carry_in = jax.lax.scan(across, h0, (a_end, h_end))
    hs = h_local + a_cum * carry_in[None]
    hs = jnp.swapaxes(hs, 0, 1).reshape(chunks * size, *a.shape[1:])
    return hs[:time]


def fold_masks(
    a: Array, b: Array, valid: Array | None, reset: Array | None
) -> tuple[Array, Array]:
    """Folds resets (``a = 0``) and padded steps (``a = 1, b = 0``) into the coefficients.

    ``valid`` and ``reset`` are bool ``(time, batch)``; ``a`` and ``b`` ``(time, batch, S)``.
    ``jnp.where`` selects, so a NaN in a masked-out coefficient never reaches the result.
    """
    if reset is not None:
        a = jnp.where(reset[..., None], jnp.zeros_like(a), a)
    if valid is not None:
        a = jnp.where(valid[..., None], a, jnp.ones_like(a))
        b = jnp.where(valid[..., None], b, jnp.zeros_like(b))
    return a, b


def linear_scan(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry,
    *,
    valid: Array | None,
    reset: Array | None,
    mode: ScanMode,
    chunk_size: int | None,
    reverse: bool,
    unroll: int | bool = 1,
) -> tuple[Carry, Array]:
    """Runs a linear cell over time-major ``xs`` ``(time, batch, input_size)`` with a kernel.

    ``valid`` and ``reset`` are bool ``(time, batch)`` or None, with `seqnets.scan`'s
    meaning (``reset`` already shifted for ``reverse`` and masked by ``valid``). Padded
    inputs are set to zero before the projection, so that NaN padding cannot reach a
    gradient through ``0 * NaN``.

    Returns:
      ``(carry, ys)``: the carry after each row's last valid step ``(batch, S)`` and the
      outputs ``(time, batch, hidden_size)``, zeros at padded steps.
    """
    if cell.linear is None:
        raise ValueError(f"linear_scan needs a linear cell; {cell.name!r} is not one.")
    if valid is not None:
        xs = jnp.where(valid[..., None], xs, jnp.zeros_like(xs))
    projected = cell.project(params, xs)
    a, b = cell.linear.coefficients(params, projected)
    a, b = fold_masks(a, b, valid, reset)
    if xs.shape[0] == 0:
        return carry, cell.linear.readout(params, b.astype(carry.dtype), projected)
    hs = linear_recurrence(
        a, b, carry, mode=mode, chunk_size=chunk_size, reverse=reverse, unroll=unroll
    )
    ys = cell.linear.readout(params, hs, projected)
    if valid is not None:
        ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return hs[0] if reverse else hs[-1], ys
