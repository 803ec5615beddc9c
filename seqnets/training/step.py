"""Jitted train and eval steps built from a loss function and an optax optimizer.

A loss function has the signature ``loss_fn(params, batch, key) -> (loss, metrics)``:
``loss`` a float32 scalar, ``metrics`` a dict of scalars, ``key`` a fresh PRNG key for
the step (dropout); ``batch`` is any pytree of arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

from seqnets.cells.base import describe_tree
from seqnets.training.state import TrainState, apply_gradients, step_key
from seqnets.types import Array

LossFn = Callable[[Any, Any, Array], tuple[Array, dict[str, Array]]]
# Combines what each device computed into what the whole batch gives:
# (loss, grads, metrics) -> (loss, grads, metrics). See `seqnets.parallel`.
Reduce = Callable[[Array, Any, dict[str, Array]], tuple[Array, Any, dict[str, Array]]]


def gradient_update(
    state: TrainState,
    optimizer: optax.GradientTransformation,
    loss: Array,
    grads: Any,
    metrics: dict[str, Array],
    reduce: Reduce | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """The update every seqnets step shares: reduce over devices, then one optimizer step.

    Returns:
      ``(state, metrics)``: the updated state and ``metrics`` plus ``loss`` and
      ``grad_norm`` (the global norm of the gradient the optimizer received).
    """
    if reduce is not None:
        loss, grads, metrics = reduce(loss, grads, metrics)
    state = apply_gradients(state, grads, optimizer)
    return state, {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}


def train_step_fn(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    reduce: Reduce | None = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    """The pure (un-jitted) train step: ``(state, batch) -> (state, metrics)``.

    Computes the gradient of ``loss_fn`` and applies ``optimizer``. Clipping, skipping
    non-finite updates and the like are optax transformations the caller chains into
    ``optimizer`` (``optax.clip_by_global_norm``, `seqnets.training.skip_nonfinite`).

    Args:
      loss_fn: ``(params, batch, key) -> (loss, metrics)``.
      optimizer: an optax transformation.
      reduce: for a step that runs once per device, combines the devices' loss, gradient
        and metrics (`seqnets.parallel.mean_over_replicas`, `mean_over_shards`); None on
        one device or under jit with sharding.

    Returns:
      The step. ``metrics`` holds the loss function's metrics plus ``loss`` and ``grad_norm``.
    """

    def checked_loss(params: Any, batch: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        out = loss_fn(params, batch, key)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
            got = (f"(loss, {describe_tree(out[1])})" if isinstance(out, tuple) and len(out) == 2
                   else describe_tree(out))
            raise ValueError(
                "the loss function must return (loss, metrics), metrics a dict of scalars; it "
                f"returned {got}. With no metrics, return (loss, {{}})."
            )
        return out

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        (loss, metrics), grads = jax.value_and_grad(checked_loss, has_aux=True)(
            state.params, batch, step_key(state)
        )
        return gradient_update(state, optimizer, loss, grads, metrics, reduce)

    return step


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    """`train_step_fn` under ``jax.jit``, donating the input state's buffers.

    What is donated: with ``donate=True`` (the default), every buffer of the `TrainState`
    passed in (parameters, optimizer state, step, key) is handed to XLA to hold the new
    state, so the old state is consumed: keep only the returned one. The batch is never
    donated. A state from `create_train_state` holds its own copies of your parameters
    and key, so the arrays you passed it stay usable; a `TrainState` you assemble
    yourself from arrays you still need should go through `create_train_state`, or use
    ``donate=False`` (the step then keeps two states alive at once).
    """
    return jax.jit(train_step_fn(loss_fn, optimizer), donate_argnums=(0,) if donate else ())


def make_eval_step(
    metrics_fn: Callable[[Any, Any], dict[str, Array]],
) -> Callable[[Any, Any], dict[str, Array]]:
    """``jax.jit(metrics_fn)``: ``(params, batch) -> metrics``, a dict of scalars."""
    return jax.jit(metrics_fn)
