"""Precision (issue 25, section 5): dtype and param_dtype on every cell and on stack,
bfloat16 outputs, float64 end to end under x64, the public matmul for cells of your own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn

CELLS = {
    "lstm": sn.lstm, "layer_norm_lstm": sn.layer_norm_lstm, "gru": sn.gru, "elman": sn.elman,
    "irnn": sn.irnn, "min_gru": sn.min_gru, "min_lstm": sn.min_lstm, "lru": sn.lru,
    "rg_lru": sn.rg_lru, "s6": sn.s6,
}
# One cell of each family that landed after the precision mechanism: matrix-state and
# xLSTM (their blocks and the other cells share make_matrix_cell, resp. the same dtypes).
NEW_CELLS = {
    "gated_delta_net": lambda **kw: sn.gated_delta_net(8, num_heads=2, **kw),
    "slstm": lambda **kw: sn.slstm(8, num_heads=2, **kw),
}
BF16_EPS = 2.0**-8  # bfloat16's unit roundoff: 8 significand bits


def real_dtypes(tree):
    """The real dtypes of a tree's leaves (complex64 counts as float32)."""
    return {jnp.finfo(leaf.dtype).dtype for leaf in jax.tree.leaves(tree)}


@pytest.mark.parametrize("dtype,param_dtype,names", [
    (jnp.bfloat16, jnp.float32, sorted(CELLS)),  # every cell
    (jnp.float32, jnp.bfloat16, ["lstm", "min_gru", "lru"]),  # one of each kind: cheaper
])
def test_bfloat16_compute_with_float32_params_and_the_reverse(dtype, param_dtype, names):
    # The issue: "bfloat16 parameters are refused: parameter b has dtype bfloat16; the cell
    # expects float32", and outputs were always float32.
    xs = jax.random.normal(jax.random.key(1), (2, 4, 3))
    for name in names:
        factory = CELLS[name]
        reference = factory(4)
        cell = factory(4, dtype=dtype, param_dtype=param_dtype)
        params = cell.init(jax.random.key(0), 3)
        assert real_dtypes(params) == {jnp.dtype(param_dtype)}, name
        carry, ys = sn.scan(cell, params, xs)
        assert ys.dtype == dtype, name
        assert real_dtypes(carry) - {jnp.dtype(jnp.float32)} == set(), name  # state >= f32
        # The same function as float32 with the same (rounded) parameters: the difference
        # is bfloat16 rounding of the matmul operands, the gates and the outputs, a few
        # units of 2^-8 relative to the outputs' scale after 4 steps.
        f32_params = jax.tree.map(lambda p: p.astype(jnp.float32), params)
        _, expected = sn.scan(reference, f32_params, xs)
        scale = float(jnp.max(jnp.abs(expected))) + 1.0
        error = float(jnp.max(jnp.abs(ys.astype(jnp.float32) - expected)))
        assert error < 8 * BF16_EPS * scale, (name, error)


@pytest.mark.parametrize("name", sorted(NEW_CELLS))
def test_matrix_state_and_xlstm_cells_compute_in_bfloat16_keep_their_state_in_float32(name):
    factory = NEW_CELLS[name]
    cell, reference = factory(dtype=jnp.bfloat16), factory()
    params = cell.init(jax.random.key(0), 3)
    assert cell == factory(dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert real_dtypes(params) == {jnp.dtype(jnp.float32)}
    assert real_dtypes(factory(param_dtype=jnp.bfloat16).init(jax.random.key(0), 3)) == {
        jnp.dtype(jnp.bfloat16)}
    if name == "slstm":
        # Input gates near exp(1000): the stabiliser m is then about 1000, where bfloat16's
        # spacing is 4, so gate math in bfloat16 would weigh the steps by factors up to
        # exp(2) (measured: 18 units of 2^-8 of the scale, against 0.55 in float32).
        params["b"] = params["b"].reshape(2, 4, 4).at[:, 0].add(1000.0).reshape(-1)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 3))

    @jax.jit  # one compilation: both cells, every mode's kernel the cell has in auto
    def both(params, xs):
        carry, ys = sn.scan(cell, params, xs)
        return carry, ys, sn.scan(reference, params, xs)[1]

    carry, ys, expected = both(params, xs)
    assert ys.dtype == jnp.bfloat16
    assert real_dtypes(carry) == {jnp.dtype(jnp.float32)}
    # bfloat16 rounds the matmuls' operands (a few terms each) and the outputs; the
    # state, the gates and the kernel are float32, so the error is a few units of 2^-8
    # of the outputs' scale, not one that grows with the state or the stabiliser.
    scale = float(jnp.max(jnp.abs(expected))) + 1.0
    error = float(jnp.max(jnp.abs(ys.astype(jnp.float32) - expected)))
    assert error < 8 * BF16_EPS * scale, (name, error)


def test_block_diagonal_einsum_in_bfloat16_runs_on_the_cpu_with_float32_sums():
    # CI's newest-JAX leg (jaxlib 0.12) failed on sLSTM in bfloat16: XLA:CPU refuses the
    # batched dot "bnd,nde->bne" of two bfloat16 operands with a float32 result ("Unsupported
    # element type for DotThunk::Execute: BF16 x BF16 = F32"; jaxlib 0.10.2 too, eagerly).
    h, r = jax.random.normal(jax.random.key(0), (2, 4, 4)), jax.random.normal(
        jax.random.key(1), (4, 4, 16))
    for spec, x, w in [("bnd,nde->bne", h, r), ("...gi,gio->...go", h, r[..., :4])]:
        got = sn.cells.dtypes.einsum(spec, x, w, jnp.bfloat16)
        assert got.dtype == jnp.float32
        # Products of bfloat16 numbers are exact in float32; only the summation order of 4
        # terms may differ from this reference of the rounded operands.
        rounded = [a.astype(jnp.bfloat16).astype(jnp.float32) for a in (x, w)]
        expected = np.einsum(spec, *map(np.asarray, rounded))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        # ...and the operands were rounded: the float32 einsum differs by about 2^-8.
        assert np.max(np.abs(np.einsum(spec, np.asarray(x), np.asarray(w)) - expected)) > 1e-3


def test_bfloat16_params_stored_by_the_user_are_accepted_by_a_bfloat16_cell():
    cell = sn.lstm(8)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), cell.init(jax.random.key(0), 3))
    with pytest.raises(ValueError, match=r"has dtype bfloat16; the cell expects float32\. "
                                         r"Build the cell with param_dtype=bfloat16"):
        sn.scan(cell, params, jnp.ones((2, 4, 3)))
    _, ys = sn.scan(sn.lstm(8, param_dtype=jnp.bfloat16), params, jnp.ones((2, 4, 3)))
    assert ys.dtype == jnp.bfloat16


def test_bfloat16_compute_keeps_fewer_bytes_for_the_backward_pass():
    # What jax.vjp keeps for an LSTM stack's gradient: the gate values and the layers'
    # outputs become bfloat16, the carry stays float32. benchmarks/precision_memory.py
    # prints the full table (0.58 of float32's bytes at T 64, 3 layers of 128).
    def kept(dtype):
        model = sn.stack(sn.lstm(16), num_layers=2, dtype=dtype)
        params = model.init(jax.random.key(0), 4)

        def loss(params):
            return jnp.mean(model.apply(params, jnp.ones((4, 8, 4)), hoist=True)[1]
                            .astype(jnp.float32) ** 2)

        _, vjp = jax.jit(lambda params: jax.vjp(loss, params))(params)
        return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(vjp))

    assert kept(jnp.bfloat16) < 0.7 * kept(None)


def test_stack_dtype_rebuilds_every_layer_and_custom_cells_say_how():
    model = sn.stack([sn.lstm(8), sn.gru(8)], dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert model.cells == (sn.lstm(8, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
                           sn.gru(8, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16))
    params = model.init(jax.random.key(0), 3)
    assert real_dtypes(params) == {jnp.dtype(jnp.bfloat16)}
    _, ys = model.apply(params, jnp.ones((2, 4, 3)))
    assert ys.dtype == jnp.bfloat16
    # A cell made with make_cell has no constructor to rebuild it with.
    leaky = sn.make_cell(init=lambda k, n: {"w": jnp.ones((n, 2))},
                         initial_carry=lambda b: jnp.zeros((b, 2)),
                         project=lambda p, x: x @ p["w"], step=lambda p, h, x: (h + x, h + x),
                         hidden_size=2, name="leaky")
    with pytest.raises(ValueError, match="not built by a seqnets cell constructor"):
        sn.stack(leaky, dtype=jnp.bfloat16)


def test_a_cell_of_your_own_with_the_public_matmul_and_precision():
    def leaky_cell(hidden, *, dtype=None, param_dtype=jnp.float32):
        p = sn.cells.precision(dtype, param_dtype)

        def init(key, input_size):
            return {"w": jax.random.normal(key, (input_size, hidden)) * 0.3,
                    "decay": jnp.full((hidden,), 0.9)}

        def step(params, h, projected):
            h = p.cast_state(params["decay"] * h + jnp.tanh(p.cast_compute(projected)))
            return h, h

        return sn.make_cell(init=init, initial_carry=lambda b: p.zeros((b, hidden)),
                            project=lambda params, x: sn.cells.matmul(x, params["w"], p.dtype),
                            step=step, hidden_size=hidden, name="leaky", precision=p)

    cell = leaky_cell(4, dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), 3)
    assert params["w"].dtype == jnp.float32
    carry, ys = sn.scan(cell, params, jnp.ones((2, 5, 3)))
    assert ys.dtype == jnp.bfloat16 and carry.dtype == jnp.float32
    _, exact = sn.scan(leaky_cell(4), params, jnp.ones((2, 5, 3)))
    np.testing.assert_allclose(ys.astype(jnp.float32), exact, atol=8 * BF16_EPS * 10)


def test_float64_is_refused_without_x64_with_the_fix():
    with pytest.raises(ValueError, match=r"float64 needs JAX's 64-bit mode.*jax_enable_x64"):
        sn.lstm(4, param_dtype=jnp.float64).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="param_dtype must be a floating-point dtype"):
        sn.gru(4, param_dtype=jnp.int32)


@pytest.mark.parametrize("name", ["lstm", "lru", "rg_lru", *sorted(NEW_CELLS)])
def test_float64_gradient_check_against_finite_differences(name):
    # The point of float64: central differences with h = 1e-6 have a truncation error
    # O(h^2 f''') ~ 1e-12 and a rounding error ~ 1e-16 / h = 1e-10, so the directional
    # derivative agrees with the gradient to ~1e-9 relative; in float32 the rounding
    # error alone is ~1e-7 / 1e-6, larger than the derivative's digits.
    with jax.enable_x64(True):
        cell = (NEW_CELLS[name] if name in NEW_CELLS else lambda **kw: CELLS[name](5, **kw))(
            dtype=jnp.float64, param_dtype=jnp.float64)
        params = cell.init(jax.random.key(0), 3)
        xs = jax.random.normal(jax.random.key(1), (2, 6, 3), jnp.float64)
        carry, ys = jax.eval_shape(lambda: sn.scan(cell, params, xs))  # dtypes, no run
        assert ys.dtype == jnp.float64 and real_dtypes(params) == {jnp.dtype(jnp.float64)}
        assert jnp.dtype(jnp.float64) in real_dtypes(carry)

        def loss(params):
            # the matrix-state kernel in its chunked mode (chunks of 4: two of them)
            mode = (dict(mode="chunked", chunk_size=4) if cell.family == "delta_rule"
                    else dict(mode="sequential"))
            return jnp.sum(jnp.sin(sn.scan(cell, params, xs, **mode)[1]))

        direction = jax.tree.map(lambda p, k: jax.random.normal(k, p.shape, p.dtype), params,
                                 dict(zip(params, jax.random.split(jax.random.key(2),
                                                                   len(params)), strict=True)))
        h = 1e-6

        @jax.jit  # one compilation: the gradient and both shifted losses
        def check(params):
            along = lambda s: loss(jax.tree.map(lambda p, d: p + s * d, params, direction))  # noqa: E731
            analytic = sum(jnp.vdot(g, d) for g, d in zip(
                jax.tree.leaves(jax.grad(loss)(params)), jax.tree.leaves(direction), strict=True))
            return (along(h) - along(-h)) / (2 * h), analytic

        numeric, analytic = check(params)
        assert abs(float(numeric - analytic)) <= 1e-7 * max(1.0, abs(float(analytic)))
