"""The one contract for lengths, resets, reverse and padding, shared by every family.

`seqnets.scan` turns its ``lengths``, ``resets`` and ``reverse`` into a `Steps` once, in
the order the recurrence processes the steps:

* **lengths** become per-step validity, ``valid (time, batch)``: step ``t`` of row ``b``
  is real when ``t < lengths[b]``. Padded inputs are zeroed once, before anything reads
  them (a NaN read by a padded step would reach every gradient through ``0 * NaN``), and
  outputs are zeroed once, after the kernel.
* **reverse** flips each row's valid steps (`flip`): the padding stays at the end, so
  every kernel runs forward only, and a reversed run is a forward run over the flipped
  sequence. ``ys`` is flipped back.
* **resets** become ``reset (time, batch)`` in that processing order (`step_resets`):
  True before step ``t`` means the carry entering it is the cell's ``initial_carry``.
  A reversed run meets an episode's end first, so an episode that starts at ``t`` resets
  the carry before the step that processes ``t - 1``. Resets on padded steps are dropped.

Each family applies a `Steps` in its own terms: the step-by-step runner selects carries
with `where_rows` (any pytree, leaves of any rank), the diagonal family folds them into
its coefficients (a reset is ``a = 0``, a padded step ``a = 1, b = 0``), and the
matrix-state families' kernels take them as ``reset`` and ``valid`` arguments.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqnets.types import Array, Carry


class Steps(NamedTuple):
    """Which steps are real and where the carry restarts, in processing order.

    Attributes:
      valid: bool ``(time, batch)``, False at padded steps; None when every step is real.
      reset: bool ``(time, batch)``, True where the carry entering the step is the
        initial carry; None when there are no resets.
    """

    valid: Array | None = None
    reset: Array | None = None

    def slice(self, start: int, stop: int) -> Steps:
        """The steps ``[start, stop)`` of the time axis."""
        return Steps(*(None if m is None else m[start:stop] for m in self))


def where_rows(mask: Array, if_true: Carry, if_false: Carry) -> Carry:
    """Selects whole batch rows of two carries: ``mask`` is bool ``(batch,)``.

    Every leaf is ``(batch, ...)`` of any rank: the mask is padded on the right to the
    leaf's rank (as Haiku's ``ResetCore`` does), so ``(batch, K, V)`` leaves select by
    row, never along an inner axis that happens to have the batch's size.
    """

    def select(a: Array, b: Array) -> Array:
        return jnp.where(jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(b) - 1)), a, b)

    return jax.tree.map(select, if_true, if_false)


def valid_steps(lengths: Array, time: int) -> Array:
    """``(time, batch)`` bools: whether step ``t`` of row ``b`` lies before ``lengths[b]``."""
    return jnp.arange(time)[:, None] < lengths[None, :]


def flip(xs: Array, lengths: Array | None) -> Array:
    """Reverses each row's first ``lengths[b]`` steps of time-major ``xs (time, batch, ...)``.

    Padded steps stay where they are, so the flipped sequence is still right-padded;
    flipping twice gives ``xs`` back. ``lengths`` None reverses the whole time axis.
    """
    if lengths is None:
        return xs[::-1]
    t = jnp.arange(xs.shape[0])[:, None]
    index = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return jnp.take_along_axis(xs, index.reshape(index.shape + (1,) * (xs.ndim - 2)), axis=0)


def step_resets(resets: Array, valid: Array | None, lengths: Array | None,
                reverse: bool) -> Array:
    """``(time, batch)`` bools in processing order: reset the carry before that step.

    ``resets`` marks episode starts in the original time order. A reversed run processes
    the flipped sequence, in which the episode that ends at ``t - 1`` begins: the flag
    moves from ``t`` to the flipped position of ``t - 1``. Resets on padded steps, and a
    reset before the first step that a reversed run processes (an episode start beyond
    the row's last step), are dropped.
    """
    if reverse:
        flipped = flip(resets, lengths)
        resets = jnp.concatenate([jnp.zeros_like(flipped[:1]), flipped[:-1]], axis=0)
    return resets if valid is None else resets & valid


def zero_padded(xs: Array, valid: Array | None) -> Array:
    """``xs (time, batch, ...)`` with every padded step's values set to zero."""
    if valid is None:
        return xs
    return jnp.where(valid.reshape(valid.shape + (1,) * (xs.ndim - 2)), xs, jnp.zeros_like(xs))


def check_lengths(lengths: Array, batch: int, time: int, where: str) -> Array:
    """``lengths`` as int32 ``(batch,)``; ValueError unless it has that shape, holds
    integers and (when its values are known, outside a trace) lies in ``[0, time]``."""
    if not hasattr(lengths, "dtype"):
        lengths = np.asarray(lengths)
    if tuple(jnp.shape(lengths)) != (batch,):
        raise ValueError(
            f"{where}: lengths must have shape (batch,) = ({batch},); "
            f"got shape {tuple(jnp.shape(lengths))}."
        )
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"{where}: lengths must be integers; got dtype {lengths.dtype}.")
    if not isinstance(lengths, jax.core.Tracer):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > time):
            raise ValueError(
                f"{where}: lengths must lie in [0, time] = [0, {time}]; got values in "
                f"[{values.min()}, {values.max()}]."
            )
    return jnp.asarray(lengths, jnp.int32)
