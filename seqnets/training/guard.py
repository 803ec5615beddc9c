"""`skip_nonfinite`: an optax transformation that skips updates whose gradient is not finite.

Chain it like any optax feature; it wraps the whole optimizer so that a skipped step
leaves every inner state (Adam's moments, schedules' counts) as it was::

    optimizer = skip_nonfinite(optax.chain(optax.clip_by_global_norm(5.0), optax.adam(1e-3)))

Like ``optax.apply_if_finite`` it never syncs with the host; unlike it, its state records
the first update it skipped, so that `check_finite`, called whenever the caller chooses
(once per epoch, at a log line), can name the step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqnets.types import Array


class NonFiniteError(FloatingPointError):
    """Raised by `check_finite` when training skipped an update with a non-finite gradient."""


class SkipNonfiniteState(NamedTuple):
    """State of `skip_nonfinite`.

    Attributes:
      inner_state: the wrapped optimizer's state, as of the last finite update.
      count: int32, updates seen (finite or not).
      skipped: int32, updates skipped because the gradient had a NaN or an infinity.
      first_skipped: int32, the 0-based index (in ``count``) of the first skipped update;
        -1 while none was skipped.
    """

    inner_state: Any
    count: Array
    skipped: Array
    first_skipped: Array


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner``: an update whose gradient is not finite becomes zeros, state unchanged.

    Args:
      inner: the optimizer to guard (usually the whole chain).

    Returns:
      An optax transformation whose state is a `SkipNonfiniteState`.
    """
    inner = optax.with_extra_args_support(inner)

    def init(params: Any) -> SkipNonfiniteState:
        # Three separate buffers: a donating step may not receive one buffer twice.
        return SkipNonfiniteState(inner.init(params), jnp.zeros((), jnp.int32),
                                  jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))

    def update(updates: Any, state: SkipNonfiniteState, params: Any = None, **extra_args: Any):
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(updates)]))
        new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
        first = jnp.where(finite | (state.first_skipped >= 0), state.first_skipped, state.count)
        return new_updates, SkipNonfiniteState(
            inner_state=keep(new_inner, state.inner_state),
            count=state.count + 1,
            skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32),
            first_skipped=first.astype(jnp.int32),
        )

    return optax.GradientTransformationExtraArgs(init, update)


def find_guard(opt_state: Any) -> SkipNonfiniteState | None:
    """The `SkipNonfiniteState` inside an optimizer state, or None."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, SkipNonfiniteState))
             if isinstance(s, SkipNonfiniteState)]
    return found[0] if found else None


def check_finite(state: Any) -> None:
    """Raises `NonFiniteError` if the optimizer skipped any update; syncs with the host.

    Args:
      state: a `seqnets.training.TrainState` (or any object with ``opt_state``) whose
        optimizer is wrapped in `skip_nonfinite`. A pmapped state (leading device axis)
        works too.

    Raises:
      NonFiniteError: naming the first skipped step (1-based, as ``TrainState.step``
        counts after it) and how many were skipped.
      ValueError: when the optimizer has no `skip_nonfinite` guard.
    """
    guard = find_guard(state.opt_state)
    if guard is None:
        raise ValueError(
            "check_finite needs the optimizer wrapped in seqnets.training.skip_nonfinite, "
            "e.g. skip_nonfinite(optax.adam(1e-3)); got an optimizer state without it."
        )
    skipped, first = (int(np.ravel(np.asarray(x))[0]) for x in (guard.skipped, guard.first_skipped))
    if skipped:
        raise NonFiniteError(
            f"step {first + 1}: the gradient was not finite, and {skipped} update(s) were "
            "skipped since the start; the parameters hold the last finite values. Lower "
            "the learning rate, chain optax.clip_by_global_norm, or check that step's batch."
        )
