"""Truncated BPTT: windows, carried state, cut gradients, fused epochs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import make, random_inputs

import seqnets as sn
from seqnets.training import create_train_state, softmax_cross_entropy
from seqnets.training.tbptt import (
    make_epoch_step,
    make_window_step,
    split_windows,
    stream_resets,
    truncated,
)

B, T, W, F = 3, 12, 4, 2


def test_split_windows_shapes_and_order():
    xs = jnp.arange(2 * 6).reshape(2, 6)
    windows = split_windows({"x": xs, "y": xs[..., None]}, 3)
    chex.assert_shape(windows["x"], (2, 2, 3))
    chex.assert_shape(windows["y"], (2, 2, 3, 1))
    np.testing.assert_array_equal(windows["x"][1, 0], [3, 4, 5])
    with pytest.raises(ValueError, match="time = 6 is not a multiple of window = 4; trim"):
        split_windows(xs, 4)
    with pytest.raises(ValueError, match=r"\(batch, time\) = \(2, 6\)"):
        split_windows((xs, xs[:, :5]), 3)


def test_windows_with_carried_state_equal_one_long_scan(cell_name):
    cell = make(cell_name, 5)
    params = cell.init(jax.random.key(0), F)
    xs = random_inputs(1, (B, T, F))
    full_carry, full_ys = sn.scan(cell, params, xs)
    carry, pieces = None, []
    for window in split_windows(xs, W):
        carry, ys = sn.scan(cell, params, window, carry=carry)
        pieces.append(ys)
    chex.assert_trees_all_close((carry, jnp.concatenate(pieces, 1)), (full_carry, full_ys),
                                atol=1e-6)


def test_stream_resets_start_each_row_afresh():
    cell = sn.lstm(3)
    params = cell.init(jax.random.key(0), F)
    xs = random_inputs(1, (B, T, F))
    stale = jax.tree.map(lambda c: c + 5.0, cell.initial_carry(B))
    _, ys = sn.scan(cell, params, xs, carry=stale, resets=stream_resets(B, T))
    np.testing.assert_allclose(ys, sn.scan(cell, params, xs)[1], atol=1e-6)


def model_and_loss(cell_name, num_layers=1):
    model = sn.stack(make(cell_name, 4), num_layers=num_layers)

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, ys = model.apply(params["rnn"], x, carry=carry)
        logits = ys @ params["w"]
        return softmax_cross_entropy(logits, y), (carry, {})

    params = {"rnn": model.init(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (4, 2))}
    x = random_inputs(1, (B, T, F))
    y = (x[..., 0] > 0).astype(jnp.int32)
    return model, loss_fn, params, (x, y)


def test_no_gradient_crosses_a_window_boundary(cell_name):
    _, loss_fn, params, (x, y) = model_and_loss(cell_name)

    def second_window_loss(x_first, window_loss):
        _, (carry, _) = window_loss(params, None, (x_first, y[:, :W]), None)
        loss, _ = window_loss(params, carry, (x[:, W : 2 * W], y[:, W : 2 * W]), None)
        return loss

    cut = jax.grad(second_window_loss)(x[:, :W], truncated(loss_fn))
    np.testing.assert_array_equal(cut, 0.0)
    # The same without the cut does reach the first window: the test can fail.
    uncut = jax.grad(second_window_loss)(x[:, :W], loss_fn)
    assert np.any(np.asarray(uncut) != 0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_fused_epoch_equals_the_per_window_loop_bit_for_bit(cell_name, num_layers):
    model, loss_fn, params, data = model_and_loss(cell_name, num_layers)
    optimizer = optax.adagrad(0.3)
    windows = split_windows(data, W)
    zero = model.initial_carry(B)

    state = create_train_state(params, optimizer, jax.random.key(1))
    window_step = make_window_step(loss_fn, optimizer)
    carry, losses = zero, []
    for k in range(T // W):
        state, carry, metrics = window_step(state, carry, jax.tree.map(lambda w, k=k: w[k], windows))
        losses.append(metrics["loss"])

    fused = create_train_state(params, optimizer, jax.random.key(1))
    fused, fused_carry, fused_metrics = make_epoch_step(loss_fn, optimizer)(fused, zero, windows)

    assert int(fused.step) == int(state.step) == T // W
    chex.assert_trees_all_equal(fused.params, state.params)
    chex.assert_trees_all_equal(fused.opt_state, state.opt_state)
    chex.assert_trees_all_equal(fused_carry, carry)
    np.testing.assert_array_equal(fused_metrics["loss"], jnp.stack(losses))


def test_reset_carry_starts_every_window_from_it():
    model, loss_fn, params, data = model_and_loss("elman")
    optimizer = optax.sgd(0.0)  # parameters stay put: only the carry policy differs
    windows = split_windows(data, W)
    zero = model.initial_carry(B)
    state = create_train_state(params, optimizer, jax.random.key(1))
    _, _, reset = make_epoch_step(loss_fn, optimizer, reset_carry=zero)(state, zero, windows)
    _, _, kept = make_epoch_step(loss_fn, optimizer)(state, zero, windows)
    for k in range(T // W):
        alone, _ = loss_fn(params, zero, jax.tree.map(lambda w, k=k: w[k], windows), None)
        np.testing.assert_allclose(reset["loss"][k], alone, rtol=1e-6)
    np.testing.assert_allclose(kept["loss"][0], reset["loss"][0], rtol=1e-6)
    assert not np.allclose(kept["loss"][1:], reset["loss"][1:])
