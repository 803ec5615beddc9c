"""`scan`: run any cell over a sequence with ``lax.scan``.

The input projection of every time step can be computed before the loop, as one
``(time * batch, input) @ (input, gates * hidden)`` matmul, so that the loop body keeps
only ``h @ W_h`` and the gate math: the layer-level trick behind cuDNN's RNN speed. It is
the default on accelerators; on the CPU, only for small buffers (see ``hoist``).

A cell that is linear in its carry (``cell.linear``, e.g. `seqnets.min_gru`) can also run
in ``"chunked"`` or ``"parallel"`` mode (`seqnets.sequence.linear`). ``checkpoint=k``
splits time into blocks of ``k`` steps and keeps only the carry between blocks for the
backward pass, which recomputes each block: memory ``O(T / k + k)`` instead of ``O(T)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from seqnets.backend import resolve_hoist
from seqnets.cells.base import Cell, check_carry, project_checked
from seqnets.sequence.linear import ScanMode, linear_scan, resolve_mode
from seqnets.types import Array, Carry, Params
from seqnets.varying import vary_like

# One step of the loop: (carry, inputs of step t) -> (carry, output of step t).
Step = Callable[[Carry, dict[str, Array]], tuple[Carry, Array]]


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
) -> tuple[Carry, Array]:
    """Runs ``cell`` over the time axis of ``xs``.

    Args:
      cell: a `Cell`, e.g. ``seqnets.lstm(128)``.
      params: the cell's parameters, from ``cell.init``.
      xs: inputs ``(batch, time, input_size)``, or ``(time, batch, input_size)`` with
        ``time_major=True``.
      carry: the carry before the first step (each leaf ``(batch, hidden)``); zeros when
        None. Pass the carry a previous call returned to continue a stream (stateful
        truncated BPTT: wrap it in ``jax.lax.stop_gradient`` to cut the gradient).
      lengths: optional int ``(batch,)`` in ``[0, time]`` for right-padded batches. Steps at
        ``t >= lengths[b]`` leave row ``b``'s carry unchanged and output zeros, so the final
        carry of each row is the carry after its last valid step. Padded inputs are
        never read: whatever they hold (NaN, infinities), outputs and gradients equal
        those of zero padding, and their own gradient is exactly zero.
      resets: optional bool ``(batch, time)`` (``(time, batch)`` if ``time_major``); True at
        ``t`` means a new episode starts at step ``t``: the carry is set to
        ``cell.initial_carry`` (zeros) before step ``t`` runs. With ``reverse=True`` the same
        array marks the same episodes: the reset happens before step ``t - 1``, the last
        step of the previous episode, which the reversed run processes first. Resets on
        padded steps are ignored.
      reverse: process each row's valid steps from last to first; ``ys`` keeps the
        original time order (what the backward half of a bidirectional layer needs).
      time_major: whether ``xs``, ``resets`` and ``ys`` put time first.
      unroll: passed to ``jax.lax.scan``.
      hoist: True computes the input projection of all steps before the loop, as one
        large matmul; False projects each step's input inside the loop, as Flax and Haiku
        do; None (default) picks for the platform (`seqnets.backend.resolve_hoist`).
        Linear cells in every mode always project all steps at once.
      mode: how to evaluate the recurrence: ``"sequential"`` (one ``lax.scan`` step per
        time step), ``"chunked"`` or ``"parallel"`` (linear cells only, see
        `seqnets.sequence.linear`), or ``"auto"`` (`seqnets.sequence.linear.resolve_mode`
        picks). Every mode gives the same result up to float32 rounding.
      chunk_size: the chunk length of the chunked mode; ``ceil(sqrt(time))`` when None.
      checkpoint: None, or a block length ``k``: the backward pass recomputes the forward
        pass of each block of ``k`` steps from the carry saved at its start, so that a
        training step stores ``O(time / k)`` carries and one block's intermediates
        instead of every step's. Works with every cell and mode; the gradients are the
        same. ``time`` need not be a multiple of ``k``.

    Returns:
      ``(carry, ys)``: the final carry, same structure as the initial one, and the hidden
      states ``ys``, ``(batch, time, hidden)`` (``(time, batch, hidden)`` if ``time_major``).

    Raises:
      ValueError: when ``xs`` is not rank 3, its last axis does not match the parameters,
        the carry does not match the batch, ``lengths``/``resets`` have the wrong shape,
        dtype or (when concrete) values, ``mode`` is unknown or needs a linear cell, or
        ``checkpoint`` is not a positive int.
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

    inputs: dict[str, Array] = {}
    if lengths is not None:
        inputs["valid"] = valid = _valid_steps(_check_lengths(lengths, batch, time), time)
        # Zeroed, not just masked afterwards: a NaN read by a padded step would reach every
        # gradient through 0 * NaN in the backward pass.
        xs = jnp.where(valid[..., None], xs, jnp.zeros_like(xs))
    if resets is not None:
        inputs["reset"] = _step_resets(_check_resets(resets, batch, time, time_major),
                                       inputs.get("valid"), reverse)
    inputs["x"] = xs
    # Inside shard_map the inputs vary across devices: the carry must vary the same way,
    # and the parameters are cast once here rather than at every use inside the loop.
    carry, initial, params = vary_like((carry, initial, params), xs)
    state = sum(leaf.shape[-1] for leaf in jax.tree.leaves(initial))
    resolved = resolve_mode(mode, cell, time, batch, state)

    def run(carry: Carry, inputs: dict[str, Array]) -> tuple[Carry, Array]:
        """The whole sequence, or one checkpointed block of it."""
        if cell.linear is not None:
            return linear_scan(
                cell, params, inputs["x"], carry, valid=inputs.get("valid"),
                reset=inputs.get("reset"), mode=resolved, chunk_size=chunk_size,
                reverse=reverse, unroll=unroll,
            )
        if hoist:
            inputs = {**inputs, "x": cell.project(params, inputs["x"])}
        step = _cell_step(cell, params, hoist)
        if "reset" in inputs:
            step = _with_resets(step, initial)
        if "valid" in inputs:
            step = _with_lengths(step)
        return jax.lax.scan(step, carry, inputs, reverse=reverse, unroll=unroll)

    if checkpoint is None:
        carry, ys = run(carry, inputs)
    else:
        carry, ys = _checkpointed(run, carry, inputs, _check_checkpoint(checkpoint), reverse)
    return carry, (ys if time_major else jnp.swapaxes(ys, 0, 1))


def _checkpointed(
    run: Callable[[Carry, dict[str, Array]], tuple[Carry, Array]],
    carry: Carry,
    inputs: dict[str, Array],
    block: int,
    reverse: bool,
) -> tuple[Carry, Array]:
    """``run`` over blocks of ``block`` steps, rematerialised in the backward pass.

    An outer ``lax.scan`` over ``ceil(time / block)`` blocks carries the carry; each
    block's ``run`` is wrapped in ``jax.checkpoint``, so the backward pass keeps only the
    carry at each block's start and recomputes the block. Padding steps at the end are
    frozen (``valid`` False), so they change neither the carry nor the kept outputs.
    """
    time, batch = inputs["x"].shape[:2]
    if time == 0:
        return run(carry, inputs)
    blocks = -(-time // block)
    pad = blocks * block - time
    if pad:
        valid = inputs.get("valid", jnp.ones((time, batch), bool))
        inputs = {
            **{k: jnp.concatenate([v, jnp.zeros_like(v[:1]).repeat(pad, 0)]) for k, v in
               inputs.items()},
            "valid": jnp.concatenate([valid, jnp.zeros((pad, batch), bool)]),
        }
    blocked = jax.tree.map(lambda v: v.reshape(blocks, block, *v.shape[1:]), inputs)
    carry, ys = jax.lax.scan(jax.checkpoint(run), carry, blocked, reverse=reverse)
    return carry, ys.reshape(blocks * block, *ys.shape[2:])[:time]


def _check_checkpoint(checkpoint: int) -> int:
    if not isinstance(checkpoint, int) or isinstance(checkpoint, bool) or checkpoint < 1:
        raise ValueError(
            "seqnets.scan: checkpoint must be None or a positive int (the block length in "
            f"steps); got {checkpoint!r}."
        )
    return checkpoint


def _cell_step(cell: Cell, params: Params, hoisted: bool) -> Step:
    """The cell's step on ``inputs["x"]``: projected already, or projected here."""

    def step(carry: Carry, inputs: dict[str, Array]) -> tuple[Carry, Array]:
        x_t = inputs["x"] if hoisted else cell.project(params, inputs["x"])
        return cell.step(params, carry, x_t)

    return step


def _with_resets(step: Step, initial: Carry) -> Step:
    """``step`` that first sets the carry of rows with ``inputs["reset"]`` to ``initial``."""

    def reset_step(carry: Carry, inputs: dict[str, Array]) -> tuple[Carry, Array]:
        return step(_where(inputs["reset"], initial, carry), inputs)

    return reset_step


def _with_lengths(step: Step) -> Step:
    """``step`` that keeps the carry and outputs zeros in rows where ``inputs["valid"]`` is False."""

    def masked_step(carry: Carry, inputs: dict[str, Array]) -> tuple[Carry, Array]:
        new_carry, h = step(carry, inputs)
        valid = inputs["valid"]
        return _where(valid, new_carry, carry), jnp.where(valid[:, None], h, jnp.zeros_like(h))

    return masked_step


def _valid_steps(lengths: Array, time: int) -> Array:
    """``(time, batch)`` bools: whether step ``t`` of row ``b`` lies before ``lengths[b]``."""
    return jnp.arange(time)[:, None] < lengths[None, :]


def _step_resets(reset: Array, valid: Array | None, reverse: bool) -> Array:
    """``(time, batch)`` bools: reset the carry before step ``t`` (of the run's own order).

    A reversed run meets the end of the previous episode first, so an episode starting at
    ``t`` resets before step ``t - 1``; resets on padded steps are dropped.
    """
    if reverse:
        shift = lambda m: jnp.concatenate([m[1:], jnp.zeros_like(m[:1])], axis=0)  # noqa: E731
        reset = shift(reset)
        return reset if valid is None else reset & shift(valid)
    return reset if valid is None else reset & valid


def _where(mask: Array, if_true: Carry, if_false: Carry) -> Carry:
    """Selects per row: ``mask`` is ``(batch,)``, every carry leaf ``(batch, hidden)``."""
    return jax.tree.map(lambda a, b: jnp.where(mask[:, None], a, b), if_true, if_false)


def _check_xs(xs: Array, time_major: bool) -> Array:
    xs = jnp.asarray(xs)
    if xs.ndim != 3:
        layout = "(time, batch, input_size)" if time_major else "(batch, time, input_size)"
        raise ValueError(
            f"seqnets.scan expects xs of shape {layout}; got shape {xs.shape} (rank {xs.ndim}). "
            "For a single step use cell.apply; for one unbatched sequence add a batch axis."
        )
    return xs


def _is_concrete(x: Array) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_lengths(lengths: Array, batch: int, time: int) -> Array:
    if not hasattr(lengths, "dtype"):
        lengths = np.asarray(lengths)
    if tuple(jnp.shape(lengths)) != (batch,):
        raise ValueError(
            f"seqnets.scan: lengths must have shape (batch,) = ({batch},); "
            f"got shape {tuple(jnp.shape(lengths))}."
        )
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"seqnets.scan: lengths must be integers; got dtype {lengths.dtype}.")
    if _is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > time):
            raise ValueError(
                f"seqnets.scan: lengths must lie in [0, time] = [0, {time}]; got values in "
                f"[{values.min()}, {values.max()}]."
            )
    return jnp.asarray(lengths, jnp.int32)


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
