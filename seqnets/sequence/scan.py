"""`scan`: run any cell over a sequence with ``lax.scan``.

The input projection of every time step can be computed before the loop, as one
``(time * batch, input) @ (input, gates * hidden)`` matmul, so that the loop body keeps
only ``h @ W_h`` and the gate math: the layer-level trick behind cuDNN's RNN speed. It is
the default on accelerators; on the CPU, only for small buffers (see ``hoist``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from seqnets.cells.base import Array, Carry, Cell, Params, check_carry, check_params

# On XLA:CPU, hoisting pays only while the projected buffer (time, batch, G*H) stays small:
# for the echo workload (15 x 5 x 4 floats) hoisting trains 1.4x faster, for row-MNIST
# (28 x 128 x 512) and pixel-MNIST (784 x 64 x 512) the per-step projection is 1.1-1.25x
# and 1.15-1.3x faster (`benchmarks/`). Accelerators always hoist.
CPU_HOIST_MAX_ELEMENTS = 2**16


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
        carry of each row is the carry after its last valid step.
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
        do. None (default) hoists on accelerators, and on the CPU only when the projected
        buffer ``(time, batch, G*H)`` has at most `CPU_HOIST_MAX_ELEMENTS` elements: on a
        2-core CPU the per-step projection measured 1.1-1.25x faster for row-MNIST
        training and 1.15-1.3x for pixel-MNIST, while hoisting was 1.4x faster for the
        tiny echo model (``python -m benchmarks.rnn_training``). The platform is
        ``jax.default_backend()``.

    Returns:
      ``(carry, ys)``: the final carry, same structure as the initial one, and the hidden
      states ``ys``, ``(batch, time, hidden)`` (``(time, batch, hidden)`` if ``time_major``).

    Raises:
      ValueError: when ``xs`` is not rank 3, its last axis does not match the parameters,
        the carry does not match the batch, or ``lengths``/``resets`` have the wrong shape,
        dtype or (when concrete) values.
    """
    xs = jnp.asarray(xs)
    if xs.ndim != 3:
        layout = "(time, batch, input_size)" if time_major else "(batch, time, input_size)"
        raise ValueError(
            f"seqnets.scan expects xs of shape {layout}; got shape {xs.shape} (rank {xs.ndim}). "
            "For a single step use cell.apply; for one unbatched sequence add a batch axis."
        )
    # Abstract evaluation only: lets the cell reject the input in the caller's own layout.
    projected = jax.eval_shape(cell.project, params, xs)
    check_params(cell.init, params, xs.shape[-1], where="seqnets.scan")
    if hoist is None:
        size = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(projected))
        hoist = jax.default_backend() != "cpu" or size <= CPU_HOIST_MAX_ELEMENTS
    xs_tm = xs if time_major else jnp.swapaxes(xs, 0, 1)
    time, batch = xs_tm.shape[:2]

    initial = cell.initial_carry(batch)
    if carry is None:
        carry = initial
    else:
        check_carry(cell.initial_carry, carry, batch, where="seqnets.scan")
        carry = jax.tree.map(lambda c, e: jnp.asarray(c, e.dtype), carry, initial)

    valid = None
    if lengths is not None:
        lengths = _check_lengths(lengths, batch, time)
        valid = jnp.arange(time)[:, None] < lengths[None, :]  # (time, batch)

    reset = None
    if resets is not None:
        reset = _check_resets(resets, batch, time, time_major)
        if reverse:
            reset = jnp.concatenate([reset[1:], jnp.zeros_like(reset[:1])], axis=0)
            if valid is not None:
                reset = reset & jnp.concatenate([valid[1:], jnp.zeros_like(valid[:1])], axis=0)
        elif valid is not None:
            reset = reset & valid

    # (time, batch, projection), or the raw inputs when each step projects its own.
    inputs = cell.project(params, xs_tm) if hoist else xs_tm
    # Inside shard_map the inputs vary across devices; the carry must vary the same way.
    carry, initial = _vary_like(carry, inputs), _vary_like(initial, inputs)
    # Replicated parameters too, once here: otherwise JAX casts them at every use inside
    # the loop, and the transpose of each cast is an all-reduce in every backward step
    # (28 all-reduces, over half the step time, for a 2-device row-MNIST step).
    params = _vary_like(params, inputs)

    def body(carry: Carry, step_inputs: tuple[Array, Array | None, Array | None]):
        input_t, valid_t, reset_t = step_inputs
        if reset_t is not None:
            carry = _where(reset_t, initial, carry)
        projected_t = input_t if hoist else cell.project(params, input_t)
        new_carry, h = cell.step(params, carry, projected_t)
        if valid_t is not None:
            new_carry = _where(valid_t, new_carry, carry)
            h = jnp.where(valid_t[:, None], h, jnp.zeros_like(h))
        return new_carry, h

    carry, ys = jax.lax.scan(
        body, carry, (inputs, valid, reset), reverse=reverse, unroll=unroll
    )
    return carry, (ys if time_major else jnp.swapaxes(ys, 0, 1))


def _varying_axes(x: Array) -> frozenset:
    """The shard_map axes over which ``x`` varies (empty outside shard_map)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)  # jax >= 0.10
    if manual is not None:
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", ()))


def _vary_like(tree: Carry, like: Array) -> Carry:
    """Casts ``tree`` to vary over the same ``shard_map`` axes as ``like`` (a no-op outside)."""
    axes = _varying_axes(like)
    if not axes:
        return tree

    def cast(leaf: Array) -> Array:
        missing = tuple(sorted(axes - _varying_axes(leaf)))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree.map(cast, tree)


def _where(mask: Array, if_true: Carry, if_false: Carry) -> Carry:
    """Selects per row: ``mask`` is ``(batch,)``, every carry leaf ``(batch, hidden)``."""
    return jax.tree.map(lambda a, b: jnp.where(mask[:, None], a, b), if_true, if_false)


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
