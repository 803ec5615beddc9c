"""Jitted train and eval steps built from a loss function and an optax optimizer.

A loss function has the signature ``loss_fn(params, batch, key) -> (loss, metrics)``:
``loss`` a float32 scalar, ``metrics`` a dict of scalars, ``key`` a fresh PRNG key for
the step (dropout); ``batch`` is any pytree of arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from seqnets.training.state import TrainState, apply_gradients, step_key
from seqnets.types import Array

LossFn = Callable[[Any, Any, Array], tuple[Array, dict[str, Array]]]


class NonFiniteLossError(FloatingPointError):
    """Raised by `check_finite` when a step produced a NaN or infinite loss or gradient."""


def train_step_fn(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = None,
    axis_name: str | None = None,
    mean_gradients: bool = False,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    """The pure (un-jitted) train step: ``(state, batch) -> (state, metrics)``.

    The step computes the gradient of ``loss_fn``, optionally clips it to global norm
    ``clip_norm``, and applies ``optimizer``. If the loss or the gradient is not finite,
    the update is skipped (parameters and optimizer state stay as they were) and
    ``metrics["finite"]`` is False; `check_finite` turns that into an error naming the step.

    ``metrics`` holds the loss function's metrics plus ``loss``, ``grad_norm`` and ``finite``.

    For a step that runs once per device (``shard_map`` or ``pmap``), ``axis_name`` names
    the device axis: the loss and metrics are averaged over it, and the gradient is that
    of the averaged loss. Under ``shard_map`` that gradient is already reduced over the
    devices; under ``pmap``, whose parameters are per-device copies, set
    ``mean_gradients=True`` to average the per-device gradients instead.
    """
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive; got {clip_norm}.")

    def mean_loss(params: Any, batch: Any, key: Array):
        loss, metrics = loss_fn(params, batch, key)
        if axis_name is not None and not mean_gradients:
            loss = jax.lax.pmean(loss, axis_name)
        return loss, metrics

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        (loss, metrics), grads = jax.value_and_grad(mean_loss, has_aux=True)(
            state.params, batch, step_key(state)
        )
        if axis_name is not None:
            metrics = jax.lax.pmean(metrics, axis_name)
            if mean_gradients:
                loss, grads = jax.lax.pmean((loss, grads), axis_name)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if clip_norm is not None:
            # Clipped here rather than chained into the optimizer, so that the optimizer
            # state the caller built with optimizer.init matches.
            scale = jnp.where(grad_norm > clip_norm, clip_norm / grad_norm, 1.0)
            grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
        updated = apply_gradients(state, grads, optimizer)
        # A non-finite step keeps the parameters and optimizer state it started from.
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = updated._replace(
            params=keep(updated.params, state.params),
            opt_state=keep(updated.opt_state, state.opt_state),
        )
        return new_state, {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": finite}

    return step


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = None,
    donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    """`train_step_fn` under ``jax.jit``, donating the input state's buffers.

    With ``donate=True`` the state passed in is consumed: keep only the returned one.
    """
    step = train_step_fn(loss_fn, optimizer, clip_norm=clip_norm)
    return jax.jit(step, donate_argnums=(0,) if donate else ())


def make_eval_step(
    metrics_fn: Callable[[Any, Any], dict[str, Array]],
) -> Callable[[Any, Any], dict[str, Array]]:
    """``jax.jit(metrics_fn)``: ``(params, batch) -> metrics``, a dict of scalars."""
    return jax.jit(metrics_fn)


def check_finite(metrics: dict[str, Any], step: int) -> None:
    """Raises `NonFiniteLossError` naming ``step`` when ``metrics["finite"]`` is False.

    Call it with the metrics a train step returned; the update of that step was
    already skipped, so the state in hand still holds the last finite parameters.
    """
    if not bool(metrics["finite"]):
        raise NonFiniteLossError(
            f"step {step}: the loss or gradient is not finite (loss={float(metrics['loss'])}, "
            f"grad_norm={float(metrics['grad_norm'])}); the update was skipped and training "
            "stopped. Lower the learning rate, set a gradient clip (clip_norm), or check the "
            "inputs of this batch."
        )
