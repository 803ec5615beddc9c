"""Stacked and bidirectional layers, dropout, final_outputs, the Flax module wrapper."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make, random_inputs

import seqnets as sn
from seqnets.interop import RNN

B, T, F = 3, 6, 4


def test_two_layers_equal_two_scans(cell_name):
    model = sn.stack(make(cell_name, 5), num_layers=2)
    params = model.init(jax.random.key(0), F)
    xs = random_inputs(1, (B, T, F))
    carry, ys = model.apply(params, xs)
    chex.assert_shape(ys, (B, T, 5))
    c0, h0 = sn.scan(model.cells[0], params[0]["forward"], xs)
    c1, h1 = sn.scan(model.cells[1], params[1]["forward"], h0)
    chex.assert_trees_all_close((carry[0]["forward"], carry[1]["forward"], ys), (c0, c1, h1))


def test_bidirectional_concatenates_forward_and_reverse(cell_name):
    model = sn.stack(make(cell_name, 5), bidirectional=True)
    params = model.init(jax.random.key(0), F)
    xs = random_inputs(1, (B, T, F))
    lengths = jnp.array([6, 3, 1])
    carry, ys = model.apply(params, xs, lengths=lengths)
    assert model.output_size == 10
    chex.assert_shape(ys, (B, T, 10))
    cf, yf = sn.scan(model.cells[0], params[0]["forward"], xs, lengths=lengths)
    cb, yb = sn.scan(model.cells[0], params[0]["backward"], xs, lengths=lengths, reverse=True)
    chex.assert_trees_all_close(
        (carry[0]["forward"], carry[0]["backward"], ys), (cf, cb, jnp.concatenate([yf, yb], -1))
    )


def test_layers_of_different_cells_and_sizes():
    model = sn.stack([sn.lstm(6), sn.gru(3)], bidirectional=True)
    params = model.init(jax.random.key(0), F)
    chex.assert_shape(params[1]["forward"]["w_x"], (12, 9))
    carry, ys = model.apply(params, random_inputs(1, (B, T, F)))
    chex.assert_shape(ys, (B, T, 6))
    chex.assert_shape(carry[0]["backward"][0], (B, 6))


def test_carry_in_and_out_across_calls():
    model = sn.stack(sn.lstm(4), num_layers=2, bidirectional=False)
    params = model.init(jax.random.key(0), F)
    xs = random_inputs(1, (B, T, F))
    full_carry, full_ys = model.apply(params, xs)
    carry, ys_a = model.apply(params, xs[:, :2])
    carry, ys_b = model.apply(params, xs[:, 2:], carry=carry)
    chex.assert_trees_all_close(
        (carry, jnp.concatenate([ys_a, ys_b], 1)), (full_carry, full_ys), atol=1e-6
    )


def test_dropout_only_with_a_key_and_deterministic_per_key():
    model = sn.stack(sn.lstm(8), num_layers=2, dropout=0.5)
    params = model.init(jax.random.key(0), F)
    xs = random_inputs(1, (B, T, F))
    plain = sn.stack(sn.lstm(8), num_layers=2).apply(params, xs)[1]
    np.testing.assert_array_equal(model.apply(params, xs)[1], plain)
    a = model.apply(params, xs, key=jax.random.key(1))[1]
    b = model.apply(params, xs, key=jax.random.key(1))[1]
    c = model.apply(params, xs, key=jax.random.key(2))[1]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain) and not np.allclose(a, c)


def test_final_outputs_reads_the_last_valid_step_and_backward_step_zero():
    ys = jnp.arange(2 * 4 * 6, dtype=jnp.float32).reshape(2, 4, 6)
    np.testing.assert_array_equal(sn.final_outputs(ys), ys[:, 3])
    model = sn.stack(sn.lstm(3), bidirectional=True)
    out = sn.final_outputs(ys, lengths=jnp.array([2, 0]), stack=model)
    np.testing.assert_array_equal(out[0], jnp.concatenate([ys[0, 1, :3], ys[0, 0, 3:]]))
    np.testing.assert_array_equal(out[1, :3], 0.0)
    np.testing.assert_array_equal(sn.final_outputs(ys, stack=sn.stack(sn.lstm(6))), ys[:, 3])
    with pytest.warns(DeprecationWarning, match="pass stack="):
        old = sn.final_outputs(ys, lengths=jnp.array([2, 0]), bidirectional=True)
    np.testing.assert_array_equal(old, out)
    with pytest.raises(ValueError, match="ys has 6 features; the stack outputs 4"):
        sn.final_outputs(ys, stack=sn.stack(sn.lstm(2), bidirectional=True))


def test_stack_rejects_bad_configurations():
    with pytest.raises(ValueError, match="num_layers=3 but 2 cells"):
        sn.stack([sn.lstm(2), sn.lstm(2)], num_layers=3)
    with pytest.raises(ValueError, match="dropout"):
        sn.stack(sn.lstm(2), dropout=1.0)
    model = sn.stack(sn.lstm(2), num_layers=2)
    with pytest.raises(ValueError, match="params has 1 layers"):
        model.apply(model.init(jax.random.key(0), 3)[:1], jnp.ones((1, 2, 3)))


def test_flax_module_wraps_a_stack():
    model = sn.stack(sn.gru(5), num_layers=2, bidirectional=True, dropout=0.25)
    module = RNN(model)
    xs = random_inputs(1, (B, T, F))
    variables = module.init(jax.random.key(0), xs)
    params = variables["params"]["seqnets"]
    np.testing.assert_array_equal(module.apply(variables, xs), model.apply(params, xs)[1])
    _, ys = module.apply(variables, xs, return_carry=True)
    chex.assert_shape(ys, (B, T, 10))
    dropped = module.apply(variables, xs, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(dropped, ys)
