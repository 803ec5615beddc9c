"""seqnets.layers: the residual block against a step-by-step NumPy reference of its equations.

The reference computes the norms, the GeGLU MLP and the skips in float64 from the
equations in `seqnets.layers.residual`'s docstring. The recurrence is the cell's own
single step, one time step at a time from a zero carry: for ``elman`` a float64 NumPy
step from its equation, for the linear cells their ``cell.apply`` (each cell's step is
tested against its paper in tests/test_cells.py and tests/test_linear.py), so that the
block's chunked and parallel modes are checked against a sequential loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn
from seqnets import layers

B, T, W = 3, 12, 8
# float32 against float64: a few ulp per sum of at most 3 * W products, carried through
# T steps of the recurrence and two residual adds; measured 3e-7 (elman) to 1.4e-6 (lru,
# chunked) on outputs up to 6.5. 1e-5 leaves room for the order of the chunked and
# parallel scans, and fails on a dropped norm gain or skip, or on the exact GELU in place
# of its tanh approximation.
TOL = 1e-5


def gelu_tanh(x):
    """GELU's tanh approximation (Hendrycks and Gimpel 2016), jax.nn.gelu's default."""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def rms_norm_ref(x, scale, eps=1e-6):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def elman_step(params, h, x_t):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    return np.tanh(x_t @ p["w_x"] + p["b"] + h @ p["w_h"])


def cell_apply_step(cell):
    def step(params, h, x_t):
        carry = h if h is not None else cell.initial_carry(x_t.shape[0])
        carry, y = cell.apply(params, carry, jnp.asarray(x_t, jnp.float32))
        return carry, np.asarray(y, np.float64)

    return step


def reference_block(params, xs, recurrence):
    """The block's equations, one time step of the recurrence at a time."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(xs, np.float64)
    h = rms_norm_ref(x, p["norm_rnn"])
    ys, carry = [], None
    for t in range(x.shape[1]):
        carry, y = recurrence(params["rnn"], carry, h[:, t])
        ys.append(y)
    x = x + np.stack(ys, axis=1)
    n = rms_norm_ref(x, p["norm_mlp"])
    return x + (gelu_tanh(n @ p["gate"]) * (n @ p["up"])) @ p["down"]


def elman_recurrence(params, h, x_t):
    h = np.zeros((x_t.shape[0], W)) if h is None else h
    h = elman_step(params, h, x_t)
    return h, h


CASES = {
    "elman": (sn.elman(W), "auto", None, lambda cell: elman_recurrence),
    "min_gru_parallel": (sn.min_gru(W), "parallel", None, cell_apply_step),
    "lru_chunked": (sn.lru(W), "chunked", 5, cell_apply_step),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_matches_the_step_by_step_reference(case):
    cell, mode, chunk_size, recurrence = CASES[case]
    block = layers.residual_block(cell, mlp_factor=3, depth=2, mode=mode, chunk_size=chunk_size)
    params = block.init(jax.random.key(0), W)
    # Gains other than one, so that a dropped gain is seen.
    params["norm_rnn"] = params["norm_rnn"] * 1.5
    params["norm_mlp"] = params["norm_mlp"] * 0.5
    xs = jax.random.normal(jax.random.key(1), (B, T, W))
    ys = jax.jit(block.apply)(params, xs)
    assert ys.shape == (B, T, W) and ys.dtype == jnp.float32
    np.testing.assert_allclose(ys, reference_block(params, xs, recurrence(cell)), atol=TOL, rtol=TOL)


def test_init_shapes_gains_and_depth_scaling():
    block = layers.residual_block(sn.min_gru(W), mlp_factor=2, depth=1)
    params = block.init(jax.random.key(3), W)
    shapes = jax.tree.map(jnp.shape, {k: v for k, v in params.items() if k != "rnn"})
    assert shapes == {"norm_rnn": (W,), "norm_mlp": (W,), "gate": (W, 2 * W), "up": (W, 2 * W),
                      "down": (2 * W, W)}
    np.testing.assert_array_equal(params["norm_rnn"], 1.0)
    np.testing.assert_array_equal(params["norm_mlp"], 1.0)
    # Same key: same parameters (determinism), and 4 blocks deep W_down starts 2x smaller.
    jax.tree.map(np.testing.assert_array_equal, params, block.init(jax.random.key(3), W))
    deep = layers.residual_block(sn.min_gru(W), mlp_factor=2, depth=4).init(jax.random.key(3), W)
    np.testing.assert_allclose(deep["down"] * 2, params["down"], rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, deep["rnn"], params["rnn"])
    # The scale itself: LeCun normal has variance 1 / fan_in, then 1 / (2 * depth). From
    # n = 128 * 64 draws the sample std's relative error is 1 / sqrt(2n) = 0.8 %, so 4 % is
    # 5 sigma; 1 / sqrt(depth) instead of 1 / sqrt(2 * depth) is 41 % off (tested).
    wide = layers.residual_block(sn.min_gru(64), depth=3).init(jax.random.key(4), 64)
    np.testing.assert_allclose(np.std(wide["down"]), 1 / np.sqrt(128 * 2 * 3), rtol=0.04)


def test_rms_norm():
    x = np.random.default_rng(0).normal(size=(2, 3, W)).astype(np.float32)
    scale = np.linspace(0.5, 2, W).astype(np.float32)
    np.testing.assert_allclose(layers.rms_norm(x, scale), rms_norm_ref(x.astype(np.float64), scale),
                               rtol=1e-6)
    np.testing.assert_array_equal(layers.rms_norm(jnp.zeros((2, W)), scale), 0.0)  # not NaN


def test_bad_input_names_the_problem_and_the_fix():
    block = layers.residual_block(sn.gru(W))
    with pytest.raises(ValueError, match=f"input size must be the block's width {W}.*got 3. "
                       f"Project the inputs to {W} features"):
        block.init(jax.random.key(0), 3)
    params = block.init(jax.random.key(0), W)
    with pytest.raises(ValueError, match=rf"expects xs of shape \(batch, time, {W}\); got \(2, 5, 3\)"):
        block.apply(params, jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match=rf"expects xs of shape .*; got \(5, {W}\)"):
        block.apply(params, jnp.ones((5, W)))
    with pytest.raises(ValueError, match="mlp_factor must be a positive int; got 0"):
        layers.residual_block(sn.gru(W), mlp_factor=0)
    with pytest.raises(ValueError, match=r"depth must be a positive int; got 1\.5"):
        layers.residual_block(sn.gru(W), depth=1.5)
    with pytest.raises(ValueError, match="expected a seqnets Cell"):
        layers.residual_block(sn.stack(sn.gru(W)))
