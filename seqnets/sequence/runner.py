"""`scan`: run any cell over a sequence with its recurrence family's kernel.

The runner is the same for every family (`seqnets.ops`):

1. it checks the inputs and turns ``lengths``, ``resets`` and ``reverse`` into one
   `seqnets.ops.masks.Steps` (per-step validity, resets in processing order), zeroes the
   padded inputs and, for ``reverse``, flips each row's valid steps, all once;
2. `seqnets.ops.registry` picks the kernel for the cell's family, ``mode``, dtype and
   platform;
3. a cell with a ``recurrence`` runs the whole sequence with that kernel; a classic cell
   runs its ``step`` once per time step (the ``"nonlinear"`` family), after the input
   projection of every step has been computed before the loop where that pays
   (``hoist``): one ``(time * batch, input) @ (input, gates * hidden)`` matmul, the
   layer-level trick behind cuDNN's RNN speed;
4. it zeroes the outputs of padded steps and flips them back, once.

``checkpoint=k`` splits time into blocks of ``k`` steps and keeps only the carry between
blocks for the backward pass, which recomputes each block: memory ``O(T / k + k)``
instead of ``O(T)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqnets.backend import resolve_hoist
from seqnets.cells.base import Cell, Linear, check_carry, check_positive_int, project_checked
from seqnets.ops import masks, registry
from seqnets.ops.masks import Steps
from seqnets.ops.registry import ScanMode
from seqnets.types import Array, Carry, Params
from seqnets.varying import vary_like

# The whole sequence (or one checkpointed block): (carry, xs, steps) -> (carry, outputs),
# outputs ys or, for return_all_carries, (ys, carries), each leaf (time, batch, ...).
Run = Callable[[Carry, Array, Steps], tuple[Carry, Any]]


def scan(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    carry: Carry | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    hoist: bool | None = None,
    mode: str | ScanMode = "auto",
    chunk_size: int | None = None,
    checkpoint: int | None = None,
    return_all_carries: bool = False,
) -> tuple[Carry, Array] | tuple[Carry, Array, Carry]:
    """Runs ``cell`` over the time axis of ``xs``.

    Args:
      cell: a `Cell`, e.g. ``seqnets.lstm(128)``.
      params: the cell's parameters, from ``cell.init``.
      xs: inputs ``(batch, time, input_size)``, or ``(time, batch, input_size)`` with
        ``time_major=True``.
      carry: the carry before the first step (each leaf ``(batch, ...)``, any rank);
        ``cell.initial_carry`` when None. Pass the carry a previous call returned to
        continue a stream (stateful truncated BPTT: wrap it in ``jax.lax.stop_gradient``
        to cut the gradient).
      lengths: optional int ``(batch,)`` in ``[0, time]`` for right-padded batches. Steps at
        ``t >= lengths[b]`` leave row ``b``'s carry unchanged and output zeros, so the final
        carry of each row is the carry after its last valid step. Padded inputs are
        never read: whatever they hold (NaN, infinities), outputs and gradients equal
        those of zero padding, and their own gradient is exactly zero.
      resets: optional bool ``(batch, time)`` (``(time, batch)`` if ``time_major``); True at
        ``t`` means a new episode starts at step ``t``: the carry is set to
        ``cell.initial_carry`` before step ``t`` runs. With ``reverse=True`` the same
        array marks the same episodes: the reset happens before step ``t - 1``, the last
        step of the previous episode, which the reversed run processes first. Resets on
        padded steps are ignored.
      reverse: process each row's valid steps from last to first; ``ys`` keeps the
        original time order (what the backward half of a bidirectional layer needs).
      time_major: whether ``xs``, ``resets`` and ``ys`` put time first.
      unroll: passed to ``jax.lax.scan``.
      hoist: classic cells only: True computes the input projection of all steps before
        the loop, as one large matmul; False projects each step's input inside the loop,
        as Flax and Haiku do; None (default) picks for the platform
        (`seqnets.backend.resolve_hoist`). Cells with a ``recurrence`` always project all
        steps at once.
      mode: how to evaluate the recurrence: ``"sequential"`` (one step per loop
        iteration), ``"chunked"`` or ``"parallel"`` where the cell's family has such a
        kernel (`seqnets.ops.registry.modes`), or ``"auto"``, the family's measured rule.
        Every mode gives the same result up to float32 rounding.
      chunk_size: the chunk length of the chunked mode; the family's default when None
        (``ceil(sqrt(time))`` for the diagonal family).
      checkpoint: None, or a block length ``k``: the backward pass recomputes the forward
        pass of each block of ``k`` steps from the carry saved at its start, so that a
        training step stores ``O(time / k)`` carries and one block's intermediates
        instead of every step's. Works with every cell and mode; the gradients are the
        same. ``time`` need not be a multiple of ``k``.
      return_all_carries: also return the carry after every step (Haiku's
        ``return_all_states``), e.g. the LSTM's ``c_t``. The diagonal family reads them
        from its kernel in any mode; other families with a ``recurrence`` then run
        their step once per time step (mode ``"auto"`` or ``"sequential"`` only).

    Returns:
      ``(carry, ys)``: the final carry, same structure as the initial one, and the
      outputs ``ys``, ``(batch, time, hidden)`` (``(time, batch, hidden)`` if
      ``time_major``). With ``return_all_carries``, ``(carry, ys, carries)``: the carry's
      structure with each leaf ``(batch, time, ...)`` (``(time, batch, ...)`` if
      ``time_major``), the carry after each step in the original time order (for
      ``reverse``, after the step that processed that position), zeros at padded steps
      as ``ys``.

    Raises:
      ValueError: when ``xs`` is not rank 3, its last axis does not match the parameters,
        the carry does not match the batch, ``lengths``/``resets`` have the wrong shape,
        dtype or (when concrete) values, ``mode`` is unknown or the cell's family has no
        such kernel, or ``chunk_size``/``checkpoint`` is not a positive int; when the
        cell's outputs are not ``cell.hidden_size`` wide.
    """
    xs = _check_xs(xs, time_major)
    # Abstract evaluation only: lets the cell reject the input in the caller's own layout.
    projected = project_checked(cell, params, xs, where="seqnets.scan")
    hoist = resolve_hoist(hoist, sum(math.prod(p.shape) for p in jax.tree.leaves(projected)))
    xs = xs if time_major else jnp.swapaxes(xs, 0, 1)
    time, batch = xs.shape[:2]
    initial = cell.initial_carry(batch)
    if carry is None:
        carry = initial
    else:
        check_carry(cell.initial_carry, carry, batch, where="seqnets.scan")
        carry = jax.tree.map(lambda c, e: jnp.asarray(c, e.dtype), carry, initial)
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size", "seqnets.scan")
    block = None if checkpoint is None else _check_checkpoint(checkpoint)

    # The mask contract (seqnets.ops.masks), applied once for every family.
    if lengths is not None:
        lengths = masks.check_lengths(lengths, batch, time, "seqnets.scan")
    valid = None if lengths is None else masks.valid_steps(lengths, time)
    reset = None
    if resets is not None:
        reset = masks.step_resets(_check_resets(resets, batch, time, time_major), valid,
                                  lengths, reverse)
    xs = masks.zero_padded(xs, valid)
    if reverse:
        xs = masks.flip(xs, lengths)

    # Inside shard_map the inputs vary across devices: the carry must vary the same way,
    # and the parameters are cast once here rather than at every use inside the loop.
    carry, initial, params = vary_like((carry, initial, params), xs)
    # Per-step carries: the diagonal family's kernels compute every state anyway; any
    # other family with a recurrence runs its step once per time step.
    step_by_step = (return_all_carries and cell.recurrence is not None
                    and not isinstance(cell.recurrence, Linear))
    if step_by_step:
        _check_step_by_step(cell, mode)
        kernel = _kernel(cell, "sequential", initial, time, batch, family="nonlinear")
    else:
        kernel = _kernel(cell, mode, initial, time, batch)
    by_kernel = cell.recurrence is not None and not step_by_step

    def run(carry: Carry, xs: Array, steps: Steps) -> tuple[Carry, Any]:
        if by_kernel:
            return cell.recurrence.run(kernel, params, cell.project(params, xs), carry, steps,
                                       chunk_size=chunk_size, unroll=unroll,
                                       **({"all_carries": True} if return_all_carries else {}))
        if hoist:
            xs = cell.project(params, xs)

        def step(carry: Carry, x_t: Array) -> tuple[Carry, Any]:
            carry, y = cell.step(params, carry, x_t if hoist else cell.project(params, x_t))
            return carry, ((y, carry) if return_all_carries else y)

        ys, carry = kernel(step, carry, xs, initial=initial, valid=steps.valid,
                           reset=steps.reset, unroll=unroll)
        return carry, ys

    steps = Steps(valid, reset)
    if block is None:
        carry, outputs = run(carry, xs, steps)
    else:
        carry, outputs = _checkpointed(run, carry, xs, steps, block)
    _check_output_width(cell, outputs[0] if return_all_carries else outputs)
    outputs = jax.tree.map(lambda v: masks.zero_padded(v, valid), outputs)
    if reverse:
        outputs = jax.tree.map(lambda v: masks.flip(v, lengths), outputs)
    if not time_major:
        outputs = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), outputs)
    return (carry, *outputs) if return_all_carries else (carry, outputs)


def _check_output_width(cell: Cell, ys: Array) -> None:
    """The outputs' width against the cell's declared ``hidden_size`` (trace time, free)."""
    if ys.shape[-1] != cell.hidden_size:
        raise ValueError(
            f"seqnets.scan: the {cell.name!r} cell declares hidden_size={cell.hidden_size}, but "
            f"its step returns outputs of width {ys.shape[-1]}. Build it with "
            f"hidden_size={ys.shape[-1]}: stacks and heads size themselves from hidden_size."
        )


def _check_step_by_step(cell: Cell, mode: str | ScanMode) -> None:
    name = mode.value if isinstance(mode, ScanMode) else mode
    if name not in ("auto", "sequential"):
        raise ValueError(
            f"seqnets.scan: return_all_carries runs the {cell.name!r} cell ({cell.family!r} "
            f"family) one step at a time, which is mode 'sequential'; got mode={name!r}. Pass "
            "mode='auto' or 'sequential', or drop return_all_carries."
        )


def _kernel(cell: Cell, mode: str | ScanMode, initial: Carry, time: int, batch: int,
            family: str | None = None):
    """The kernel `seqnets.ops.registry` picks for ``cell``'s family (or ``family``) and
    this run."""
    family = cell.family if family is None else family
    name = mode.value if isinstance(mode, ScanMode) else mode
    if name in registry.MODES and name not in registry.modes(family):
        if cell.recurrence is None:
            raise ValueError(
                f"seqnets.scan: the {cell.name!r} cell is not linear in its carry, so it "
                f"runs only in modes {registry.modes(family)}; got mode={name!r}. Chunked "
                "and parallel modes need a cell with a recurrence family that has them, "
                "e.g. one built with seqnets.cells.make_linear_cell."
            )
        raise ValueError(
            f"seqnets.scan: the {cell.name!r} cell ({family!r} family) runs only in modes "
            f"{registry.modes(family)}; got mode={name!r}."
        )
    leaves = jax.tree.leaves(initial)
    state = sum(math.prod(leaf.shape[1:]) for leaf in leaves)
    _, kernel = registry.resolve(family, mode, dtype=jnp.result_type(*leaves), time=time,
                                 batch=batch, state=state, where="seqnets.scan")
    return kernel


def _checkpointed(run: Run, carry: Carry, xs: Array, steps: Steps,
                  block: int) -> tuple[Carry, Array]:
    """``run`` over blocks of ``block`` steps, rematerialised in the backward pass.

    An outer ``lax.scan`` over ``ceil(time / block)`` blocks carries the carry; each
    block's ``run`` is wrapped in ``jax.checkpoint``, so the backward pass keeps only the
    carry at each block's start and recomputes the block. Padding steps at the end are
    frozen (``valid`` False), so they change neither the carry nor the kept outputs.
    """
    time, batch = xs.shape[:2]
    if time == 0:
        return run(carry, xs, steps)
    blocks = -(-time // block)
    pad = blocks * block - time
    if pad:
        def extend(v: Array) -> Array:
            return jnp.concatenate([v, jnp.zeros((pad, *v.shape[1:]), v.dtype)])

        valid = jnp.ones((time, batch), bool) if steps.valid is None else steps.valid
        xs, steps = extend(xs), Steps(extend(valid),
                                      None if steps.reset is None else extend(steps.reset))

    def run_block(carry: Carry, inputs: tuple[Array, Steps]) -> tuple[Carry, Any]:
        return run(carry, *inputs)

    blocked = jax.tree.map(lambda v: v.reshape(blocks, block, *v.shape[1:]), (xs, steps))
    carry, outputs = jax.lax.scan(jax.checkpoint(run_block), carry, blocked)
    return carry, jax.tree.map(lambda v: v.reshape(blocks * block, *v.shape[2:])[:time], outputs)


def _check_checkpoint(checkpoint: int) -> int:
    if (isinstance(checkpoint, bool) or not isinstance(checkpoint, numbers.Integral)
            or checkpoint < 1):
        raise ValueError(
            "seqnets.scan: checkpoint must be None or a positive int (the block length in "
            f"steps); got {checkpoint!r}."
        )
    return int(checkpoint)


def _check_xs(xs: Array, time_major: bool) -> Array:
    xs = jnp.asarray(xs)
    if xs.ndim != 3:
        layout = "(time, batch, input_size)" if time_major else "(batch, time, input_size)"
        raise ValueError(
            f"seqnets.scan expects xs of shape {layout}; got shape {xs.shape} (rank {xs.ndim}). "
            "For a single step use cell.apply; for one unbatched sequence add a batch axis."
        )
    return xs


def _check_resets(resets: Array, batch: int, time: int, time_major: bool) -> Array:
    expected = (time, batch) if time_major else (batch, time)
    if tuple(jnp.shape(resets)) != expected:
        layout = "(time, batch)" if time_major else "(batch, time)"
        raise ValueError(
            f"seqnets.scan: resets must have shape {layout} = {expected}; "
            f"got shape {tuple(jnp.shape(resets))}."
        )
    resets = jnp.asarray(resets)
    if resets.dtype != jnp.bool_:
        raise ValueError(f"seqnets.scan: resets must be booleans; got dtype {resets.dtype}.")
    return resets if time_major else resets.T
