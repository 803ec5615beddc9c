"""`skip_nonfinite`: an optax transformation that skips updates that would leave the
parameters non-finite.

Chain it like any optax feature; it wraps the whole optimizer so that a skipped step
leaves every inner state (Adam's moments, schedules' counts) as it was::

    optimizer = skip_nonfinite(optax.chain(optax.clip_by_global_norm(5.0), optax.adam(1e-3)))

A step is skipped when any of three is not finite (NaN or infinite): the gradient ``g``,
the update ``u`` the inner optimizer makes of it, or the new parameters
``optax.apply_updates(p, u)`` (``p + u`` cast to ``p``'s dtype). A finite gradient does not
make a finite update: ``sgd(1e10)`` turns a gradient of ``1e30`` into ``-1e40``, which is
``-inf`` in float32; and a finite update can still overflow the parameters' dtype. So
after any number of steps the parameters hold finite values, as long as they started so.

Like ``optax.apply_if_finite`` it never syncs with the host; unlike it, its state records
the first update it skipped and why, so that `check_finite`, called whenever the caller
chooses (once per epoch, before a checkpoint), can name the step and the cause.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqnets.types import Array


class NonFiniteError(FloatingPointError):
    """Training met a non-finite value: `check_finite` found a skipped update, or a
    checkpoint was asked to save non-finite parameters."""


# Why the first skipped update was skipped (`SkipNonfiniteState.first_cause`).
CAUSES = {
    1: "the gradient was not finite",
    2: "the gradient was finite but the optimizer's update was not (too large a learning "
       "rate, or an optimizer state that overflowed)",
    3: "the gradient and the update were finite but the new parameters were not (the update "
       "overflowed the parameters' dtype)",
}


class SkipNonfiniteState(NamedTuple):
    """State of `skip_nonfinite`.

    Attributes:
      inner_state: the wrapped optimizer's state, as of the last finite update.
      count: int32, updates seen (finite or not).
      skipped: int32, updates skipped because the gradient had a NaN or an infinity.
      first_skipped: int32, the 0-based index (in ``count``) of the first skipped update;
        -1 while none was skipped.
      first_cause: int32, why that update was skipped: 1 the gradient, 2 the update, 3 the
        new parameters were not finite (see `CAUSES`); 0 while none was skipped.
    """

    inner_state: Any
    count: Array
    skipped: Array
    first_skipped: Array
    first_cause: Array


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner``: an update that is not finite, or whose gradient is not, or that
    would make the parameters non-finite, becomes zeros, and the inner state is unchanged.

    The new parameters are checked only when ``update`` receives ``params`` (as
    `seqnets.training.apply_gradients` and every seqnets train step pass them).

    Args:
      inner: the optimizer to guard (usually the whole chain).

    Returns:
      An optax transformation whose state is a `SkipNonfiniteState`.
    """
    inner = optax.with_extra_args_support(inner)

    def init(params: Any) -> SkipNonfiniteState:
        # Three separate buffers: a donating step may not receive one buffer twice.
        return SkipNonfiniteState(inner.init(params), jnp.zeros((), jnp.int32),
                                  jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32),
                                  jnp.zeros((), jnp.int32))

    def update(updates: Any, state: SkipNonfiniteState, params: Any = None, **extra_args: Any):
        gradient_ok = all_finite(updates)
        new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        update_ok = all_finite(new_updates)
        # apply_updates itself, so that the cast to the parameters' dtype is checked too.
        params_ok = True if params is None else all_finite(optax.apply_updates(params, new_updates))
        finite = gradient_ok & update_ok & params_ok
        cause = jnp.where(~gradient_ok, 1, jnp.where(~update_ok, 2, 3))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
        first_skip = ~finite & (state.first_skipped < 0)
        return new_updates, SkipNonfiniteState(
            inner_state=keep(new_inner, state.inner_state),
            count=state.count + 1,
            skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32),
            first_skipped=jnp.where(first_skip, state.count, state.first_skipped).astype(jnp.int32),
            first_cause=jnp.where(first_skip, cause, state.first_cause).astype(jnp.int32),
        )

    return optax.GradientTransformationExtraArgs(init, update)


def all_finite(tree: Any) -> Array:
    """A bool scalar: whether every leaf of ``tree`` is finite (integer leaves always are)."""
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)], bool))


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
        counts after it), what was not finite there, and how many were skipped.
      ValueError: when the optimizer has no `skip_nonfinite` guard.
    """
    guard = find_guard(state.opt_state)
    if guard is None:
        raise ValueError(
            "check_finite needs the optimizer wrapped in seqnets.training.skip_nonfinite, "
            "e.g. skip_nonfinite(optax.adam(1e-3)); got an optimizer state without it."
        )
    skipped, first, cause = (int(np.ravel(np.asarray(x))[0])
                             for x in (guard.skipped, guard.first_skipped, guard.first_cause))
    if skipped:
        raise NonFiniteError(
            f"step {first + 1}: {CAUSES.get(cause, 'a value was not finite')}, and {skipped} "
            "update(s) were skipped since the start; the parameters hold the last finite "
            "values. Lower the learning rate, chain optax.clip_by_global_norm, or check that "
            "step's batch."
        )
