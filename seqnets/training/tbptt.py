"""Stateful truncated backpropagation through time (TBPTT).

A batch of long streams ``(batch, time, ...)`` is cut into consecutive windows of
``window`` steps. Each window is one optimizer update; the final carry of window ``k``
is the initial carry of window ``k + 1``, passed through ``lax.stop_gradient`` so that
no gradient crosses a window boundary. Two ways to run an epoch of windows, with the
same arithmetic:

* `make_window_step`: one jitted call per window (a Python loop drives it);
* `make_epoch_step`: one jitted call per epoch, a ``lax.scan`` over the windows that
  carries parameters, optimizer state and RNN carry, with no Python loop in between.

A TBPTT loss function has the signature
``loss_fn(params, carry, window_batch, key) -> (loss, (carry, metrics))``, where
``window_batch`` is a pytree of ``(batch, window, ...)`` arrays and ``metrics`` a dict of
arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from seqnets.cells.base import describe_tree
from seqnets.training.state import TrainState, step_key
from seqnets.training.step import gradient_update
from seqnets.types import Array, Carry

TBPTTLossFn = Callable[[Any, Carry, Any, Array], tuple[Array, tuple[Carry, dict[str, Array]]]]


def split_windows(tree: Any, window: int) -> Any:
    """Cuts every ``(batch, time, ...)`` leaf into ``(time // window, batch, window, ...)``.

    Raises:
      ValueError: when ``time`` is not a multiple of ``window`` (the message says by how
        much to trim), or the leaves disagree on ``(batch, time)``.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("split_windows needs at least one array.")
    batch, time = jnp.shape(leaves[0])[:2]
    for leaf in leaves:
        if jnp.ndim(leaf) < 2 or tuple(jnp.shape(leaf)[:2]) != (batch, time):
            raise ValueError(
                f"split_windows: every array must start with (batch, time) = ({batch}, {time}); "
                f"got shape {jnp.shape(leaf)}."
            )
    if window < 1 or time % window:
        raise ValueError(
            f"split_windows: time = {time} is not a multiple of window = {window}; trim the "
            f"streams to {time - time % window} steps, or pick a window that divides {time}."
        )

    def split(x: Array) -> Array:
        x = jnp.reshape(x, (batch, time // window, window, *jnp.shape(x)[2:]))
        return jnp.swapaxes(x, 0, 1)

    return jax.tree.map(split, tree)


def stream_resets(batch: int, time: int) -> Array:
    """``(batch, time)`` bools, True at step 0 only: each row is a stream that starts there."""
    return jnp.zeros((batch, time), bool).at[:, 0].set(True)


def truncated(loss_fn: TBPTTLossFn) -> TBPTTLossFn:
    """``loss_fn`` with ``lax.stop_gradient`` on the incoming carry: the loss of one window.

    Its gradient never reaches earlier windows, whatever differentiates it. What
    ``loss_fn`` returns is checked where it is traced: ``(loss, (carry, metrics))``.
    """

    def window_loss(params: Any, carry: Carry, window_batch: Any, key: Array):
        out = loss_fn(params, jax.lax.stop_gradient(carry), window_batch, key)
        check_tbptt_output(out)
        return out

    return window_loss


def check_tbptt_output(out: Any) -> None:
    """ValueError unless ``out`` is ``(loss, (carry, metrics))`` with ``metrics`` a dict."""
    if (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple)
            and len(out[1]) == 2 and isinstance(out[1][1], Mapping)):
        return
    if isinstance(out, tuple) and len(out) == 2:
        got = f"(loss, {describe_tree(out[1])})"
    else:
        got = describe_tree(out)
    raise ValueError(
        "the TBPTT loss function must return (loss, (carry, metrics)): the window's final "
        f"carry and a dict of metrics; it returned {got}. With no metrics, return "
        "(loss, (carry, {}))."
    )


def _window_update(
    loss_fn: TBPTTLossFn, optimizer: optax.GradientTransformation, reset_carry: Carry | None
):
    window_loss = truncated(loss_fn)

    def update(state: TrainState, carry: Carry, window_batch: Any):
        carry = carry if reset_carry is None else reset_carry
        grad_fn = jax.value_and_grad(window_loss, has_aux=True)
        (loss, (carry, metrics)), grads = grad_fn(state.params, carry, window_batch,
                                                  step_key(state))
        state, metrics = gradient_update(state, optimizer, loss, grads, metrics)
        return state, carry, metrics

    return update


def make_window_step(
    loss_fn: TBPTTLossFn,
    optimizer: optax.GradientTransformation,
    *,
    reset_carry: Carry | None = None,
) -> Callable[[TrainState, Carry, Any], tuple[TrainState, Carry, dict[str, Array]]]:
    """A jitted update on one window: ``(state, carry, window_batch) -> (state, carry, metrics)``.

    Args:
      loss_fn: the TBPTT loss (see the module docstring).
      optimizer: an optax optimizer; chain clipping or `seqnets.training.skip_nonfinite`
        into it as for `seqnets.training.make_train_step` (the same update path).
      reset_carry: when given, every window starts from this carry instead of the one
        passed in (the "reset" ablation: no state crosses windows).

    Returns:
      The step; the returned carry is the final carry of the window (feed it to the next).
      ``metrics`` holds the loss function's metrics plus ``loss`` and ``grad_norm``.
    """
    return jax.jit(_window_update(loss_fn, optimizer, reset_carry))


def make_epoch_step(
    loss_fn: TBPTTLossFn,
    optimizer: optax.GradientTransformation,
    *,
    reset_carry: Carry | None = None,
) -> Callable[[TrainState, Carry, Any], tuple[TrainState, Carry, dict[str, Array]]]:
    """A jitted epoch: ``(state, carry, windows) -> (state, carry, metrics)``.

    ``windows`` is what `split_windows` returns, leaves ``(num_windows, batch, window, ...)``;
    the epoch applies one update per window inside a ``lax.scan``. ``metrics`` leaves gain
    a leading ``(num_windows,)`` axis. Same arguments as `make_window_step`.
    """
    update = _window_update(loss_fn, optimizer, reset_carry)

    def epoch(state: TrainState, carry: Carry, windows: Any):
        def body(state_and_carry, window_batch):
            state, carry, metrics = update(*state_and_carry, window_batch)
            return (state, carry), metrics

        (state, carry), metrics = jax.lax.scan(body, (state, carry), windows)
        return state, carry, metrics

    return jax.jit(epoch)
