"""Mamba's S6 against a step-by-step reference written from the paper's equations.

Tolerance: the modes reassociate float32 sums (see tests/test_linear.py); the states are
bounded (``exp(Delta A) < 1``), so over these 11 steps the error stays at a few ulps of
``|y| ~ 1``: 1e-5. A mask off by one step moves outputs by O(|y|).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import seqnets as sn
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy
from seqnets.training.tbptt import make_epoch_step, split_windows

MODES = ("sequential", "chunked", "parallel")
F, H, N = 3, 4, 5
CELL = sn.s6(H, N)


def close(got, want, atol=1e-5, rtol=1e-5):
    chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


def reference(params, xs, h0, valid, reset):
    """Algorithm 2 of Gu & Dao (2023), one step at a time in NumPy float64, with resets
    (the state restarts from zeros) and padded steps (state kept, output zero)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(xs, np.float64)
    u = x @ p["w_in"] if "w_in" in p else x
    rank = p["w_dt"].shape[0]
    low = u @ p["w_x"]
    dt, b, c = low[..., :rank], low[..., rank:rank + N], low[..., rank + N:]
    delta = np.log1p(np.exp(dt @ p["w_dt"] + p["b_dt"]))  # softplus
    a = -np.exp(p["a_log"])  # (H, N)
    h = np.asarray(h0, np.float64).copy()
    ys = np.zeros((*x.shape[:2], H))
    for batch in range(x.shape[0]):
        for t in range(x.shape[1]):
            if not valid[batch, t]:
                continue
            if reset[batch, t]:
                h[batch] = 0.0
            da = np.exp(delta[batch, t][:, None] * a)
            db = delta[batch, t][:, None] * b[batch, t][None, :]
            h[batch] = da * h[batch] + db * u[batch, t][:, None]
            ys[batch, t] = h[batch] @ c[batch, t] + p["d"] * u[batch, t]
    return h, ys


@functools.partial(jax.jit, static_argnames=("mode", "reverse", "checkpoint"))
def run(params, xs, carry, lengths, resets, mode, reverse=False, checkpoint=None):
    return sn.scan(CELL, params, xs, carry=carry, lengths=lengths, resets=resets, mode=mode,
                   reverse=reverse, chunk_size=3, checkpoint=checkpoint)


def inputs(batch=3, time=11):
    params = CELL.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (batch, time, F))
    carry = 0.5 * jax.random.normal(jax.random.key(2), (batch, H, N))
    lengths = jnp.array([time, 6, 0])
    resets = jnp.zeros((batch, time), bool).at[0, 4].set(True).at[1, 2].set(True)
    return params, xs, carry, lengths, resets


def test_parameters_follow_the_paper():
    params = CELL.init(jax.random.key(0), F)
    np.testing.assert_allclose(-np.exp(params["a_log"][0]), -np.arange(1, N + 1))  # S4D-real
    dt = np.log1p(np.exp(np.asarray(params["b_dt"])))
    assert np.all((dt >= 0.001 * 0.999) & (dt <= 0.1 * 1.001))
    np.testing.assert_array_equal(params["d"], 1.0)
    assert CELL.initial_carry(2).shape == (2, H, N) and CELL.family == "diagonal"


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_equals_the_reference_with_lengths_resets_and_reverse(mode):
    params, xs, carry, lengths, resets = inputs()
    valid = np.arange(11)[None] < np.asarray(lengths)[:, None]
    want_carry, want_ys = reference(params, xs, carry, valid, np.asarray(resets))
    got_carry, got_ys = run(params, xs, carry, lengths, resets, mode)
    close(got_ys, want_ys)
    close(got_carry, want_carry)
    # Reversed: the reference on each row's valid steps reversed, its resets moved to the
    # flipped position of the step before each episode start.
    got_carry, got_ys = run(params, xs, carry, lengths, resets, mode, reverse=True)
    for row in range(3):
        n = int(lengths[row])
        flipped_resets = np.zeros((1, n), bool)
        for t in np.flatnonzero(np.asarray(resets[row, :n])):
            if t > 0:
                flipped_resets[0, n - t] = True
        h, ys = reference(params, xs[row:row + 1, :n][:, ::-1], carry[row:row + 1],
                          np.ones((1, n), bool), flipped_resets)
        close(got_ys[row, :n], ys[0, ::-1])
        close(got_carry[row], h[0])
        np.testing.assert_array_equal(got_ys[row, n:], 0.0)


def test_gradients_equal_in_every_mode_and_with_checkpointing():
    params, xs, carry, lengths, resets = inputs()
    w = jax.random.normal(jax.random.key(3), (3, 11, H))

    @functools.partial(jax.jit, static_argnames=("mode", "checkpoint"))
    def grad(params, xs, carry, mode, checkpoint=None):
        def loss(params, xs, carry):
            carry, ys = run(params, xs, carry, lengths, resets, mode, checkpoint=checkpoint)
            return jnp.sum(w * ys) + jnp.sum(carry**2)
        return jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)

    want = grad(params, xs, carry, "sequential")
    for mode in ("chunked", "parallel"):
        close(grad(params, xs, carry, mode), want, atol=1e-4, rtol=1e-4)
    close(grad(params, xs, carry, "sequential", checkpoint=4), want, atol=1e-4, rtol=1e-4)


def test_inside_a_bidirectional_stack_and_the_fused_tbptt_epoch():
    model = sn.stack([CELL, sn.s6(H, N)], bidirectional=True)
    params = {"rnn": model.init(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (model.output_size, 2))}
    x = jax.random.normal(jax.random.key(1), (2, 12, F))
    windows = split_windows((x, (x[..., 0] > 0).astype(jnp.int32)), 6)

    def loss_fn_in(mode):
        def loss_fn(params, carry, batch, key):
            x, y = batch
            carry, ys = model.apply(params["rnn"], x, carry=carry, mode=mode, chunk_size=4)
            return softmax_cross_entropy(ys @ params["w"], y), (carry, {})
        return loss_fn

    optimizer = optax.adam(1e-2)
    results = [make_epoch_step(loss_fn_in(mode), optimizer)(
        create_train_state(params, optimizer, jax.random.key(1)), model.initial_carry(2),
        windows) for mode in ("sequential", "chunked")]
    (state_a, carry_a, metrics_a), (state_b, carry_b, metrics_b) = results
    # Two Adam updates amplify a 1e-7 gradient difference to far below 1e-5.
    close((state_b.params, carry_b, metrics_b["loss"]),
          (state_a.params, carry_a, metrics_a["loss"]))


def test_shard_map_step_matches_one_device():
    from seqnets import parallel

    model = sn.stack([CELL, sn.min_gru(H)])

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x, mode="chunked", chunk_size=4)
        return softmax_cross_entropy(ys[:, -1] @ params["w"], y), {}

    params = {"rnn": model.init(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (H, 3))}
    batch = (jax.random.normal(jax.random.key(1), (16, 10, F)),
             jax.random.randint(jax.random.key(3), (16,), 0, 3))
    optimizer = optax.sgd(0.1)
    one, _ = make_train_step(loss_fn, optimizer, donate=False)(
        create_train_state(params, optimizer, jax.random.key(1)), batch)
    mesh = parallel.data_mesh()
    state = parallel.replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
    many, _ = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)(
        state, parallel.shard_batch(batch, mesh))
    close(jax.device_get(many.params), jax.device_get(one.params))
