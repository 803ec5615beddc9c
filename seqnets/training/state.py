"""`TrainState`: everything a training run needs to continue, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from seqnets.types import Array


class TrainState(NamedTuple):
    """Parameters, optimizer state, step counter and RNG key.

    Attributes:
      params: the model's parameters (any pytree).
      opt_state: the optax optimizer's state.
      step: int32 scalar, the number of updates applied so far.
      key: a typed PRNG key (``jax.random.key``); the train step splits a fresh key for
        dropout and the like from ``fold_in(key, step)``, so the key itself never changes.
    """

    params: Any
    opt_state: Any
    step: Array
    key: Array


def create_train_state(
    params: Any, optimizer: optax.GradientTransformation, key: Array
) -> TrainState:
    """A `TrainState` at step 0 with ``optimizer.init(params)``.

    The state holds copies of ``params``' JAX arrays and of ``key``, made here once: the
    jitted train steps donate the state passed to them (`make_train_step`), and donation
    would otherwise delete the caller's own arrays. The optimizer state is initialised on
    the copies, so nothing in the state shares a buffer with what the caller holds.
    """
    params = _copy_arrays(params)
    return TrainState(params, optimizer.init(params), jax.numpy.zeros((), jax.numpy.int32),
                      _copy_arrays(key))


def _copy_arrays(tree: Any) -> Any:
    """``tree`` with every JAX array copied into a buffer of its own (same sharding).

    NumPy arrays and Python numbers are left as they are: jit copies them to the device
    at every call, so donation never touches the caller's.
    """
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, tree)


def step_key(state: TrainState) -> Array:
    """The PRNG key of the step about to run: ``fold_in(state.key, state.step)``."""
    return jax.random.fold_in(state.key, state.step)


def apply_gradients(
    state: TrainState, grads: Any, optimizer: optax.GradientTransformation
) -> TrainState:
    """One optimizer update: new params and optimizer state, ``step + 1``, the same key."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1, state.key)
