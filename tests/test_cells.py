"""Cells: parameter shapes, initialisation, one step, dtype."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CELL_FACTORIES, make, random_inputs

import seqnets as sn

GATES = {"lstm": 4, "gru": 3, "elman": 1}


def test_param_and_carry_shapes(cell_name):
    cell = make(cell_name, hidden=6)
    params = cell.init(jax.random.key(0), 3)
    g = GATES[cell_name]
    chex.assert_shape(params["w_x"], (3, g * 6))
    chex.assert_shape(params["w_h"], (6, g * 6))
    chex.assert_shape(params["b"], (g * 6,))
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.float32
    carry = cell.initial_carry(4)
    for leaf in jax.tree.leaves(carry):
        chex.assert_shape(leaf, (4, 6))
        assert not np.any(np.asarray(leaf))
    assert cell.hidden_size == 6 and cell.name == cell_name


def test_lstm_carry_is_c_then_h_and_forget_bias_is_one():
    cell = sn.lstm(3)
    params = cell.init(jax.random.key(0), 2)
    np.testing.assert_array_equal(params["b"], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    x = random_inputs(1, (2, 2))
    (c, h), out = cell.apply(params, cell.initial_carry(2), x)
    np.testing.assert_array_equal(h, out)
    # c is unbounded by tanh; h = o * tanh(c) is strictly inside it.
    assert np.all(np.abs(h) < np.abs(np.tanh(c)) + 1e-7)


def test_apply_shapes_and_step_equals_project_then_step(cell_name):
    cell = make(cell_name)
    params = cell.init(jax.random.key(0), 3)
    x = random_inputs(1, (4, 3))
    carry, h = cell.apply(params, cell.initial_carry(4), x)
    chex.assert_shape(h, (4, 5))
    carry2, h2 = cell.step(params, cell.initial_carry(4), cell.project(params, x))
    chex.assert_trees_all_equal((carry, h), (carry2, h2))


def test_recurrent_kernels_are_orthogonal_per_gate(cell_name):
    cell = make(cell_name, hidden=7)
    w_h = np.asarray(cell.init(jax.random.key(3), 2)["w_h"])
    for block in np.split(w_h, GATES[cell_name], axis=1):
        np.testing.assert_allclose(block.T @ block, np.eye(7), atol=1e-5)


def test_irnn_is_relu_with_identity_recurrence():
    cell = sn.irnn(4)
    params = cell.init(jax.random.key(0), 2)
    np.testing.assert_array_equal(params["w_h"], np.eye(4))
    _, h = cell.apply(params, cell.initial_carry(3), random_inputs(2, (3, 2)))
    assert np.all(np.asarray(h) >= 0)


def test_elman_activation_option():
    cell = sn.elman(4, activation=jax.nn.relu)
    params = cell.init(jax.random.key(0), 2)
    _, h = cell.apply(params, cell.initial_carry(8), random_inputs(2, (8, 2)))
    assert np.all(np.asarray(h) >= 0) and np.any(np.asarray(h) == 0)


def test_init_is_deterministic_bit_for_bit(cell_name):
    cell = make(cell_name)
    a = cell.init(jax.random.key(42), 3)
    b = cell.init(jax.random.key(42), 3)
    chex.assert_trees_all_equal(a, b)
    c = cell.init(jax.random.key(43), 3)
    assert not np.array_equal(a["w_x"], c["w_x"])


def test_bfloat16_compute_keeps_float32_params_and_carry(cell_name):
    cell32 = make(cell_name)
    cell16 = CELL_FACTORIES[cell_name](5, dtype=jnp.bfloat16)
    params = cell32.init(jax.random.key(0), 3)
    xs = random_inputs(1, (2, 6, 3))
    _, ys32 = sn.scan(cell32, params, xs)
    carry16, ys16 = sn.scan(cell16, params, xs)
    for leaf in jax.tree.leaves(carry16):
        assert leaf.dtype == jnp.float32
    np.testing.assert_allclose(ys16, ys32, atol=3e-2)
    assert not np.array_equal(ys16, ys32)  # bfloat16 really was used


def test_make_cell_builds_a_custom_cell_that_scan_runs():
    def init(key, input_size):
        return {"w_x": jnp.ones((input_size, 2)), "decay": jnp.array(0.5)}

    cell = sn.make_cell(
        init=init,
        initial_carry=lambda b: jnp.zeros((b, 2)),
        project=lambda p, x: x @ p["w_x"],
        step=lambda p, h, px: (p["decay"] * h + px,) * 2,
        hidden_size=2,
        name="leaky",
    )
    params = cell.init(None, 3)
    _, ys = sn.scan(cell, params, jnp.ones((1, 3, 3)))
    np.testing.assert_allclose(ys[0, :, 0], [3.0, 4.5, 5.25])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_hidden_size_raises(bad):
    with pytest.raises(ValueError, match="hidden_size"):
        sn.lstm(bad)


def test_tiny_matmuls_fuse_as_multiply_and_sum():
    """At most SMALL_MATMUL_MACS multiply-adds: no dot kernel, the same products summed."""
    from seqnets.backend import SMALL_MATMUL_MACS
    from seqnets.cells.base import matmul

    x = jax.random.normal(jax.random.key(0), (5, 4))
    w = jax.random.normal(jax.random.key(1), (4, 4))
    assert SMALL_MATMUL_MACS >= 5 * 4 * 4
    assert "dot_general" not in str(jax.make_jaxpr(matmul, static_argnums=2)(x, w, jnp.float32))
    np.testing.assert_allclose(matmul(x, w, jnp.float32), x @ w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(matmul(x, w, jnp.bfloat16),
                               jnp.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                                          preferred_element_type=jnp.float32), rtol=1e-6)
    big = jnp.ones((64, 128))
    assert SMALL_MATMUL_MACS < 64 * 128 * 4
    assert "dot_general" in str(jax.make_jaxpr(matmul, static_argnums=2)(big, jnp.ones((128, 4)),
                                                                        jnp.float32))
