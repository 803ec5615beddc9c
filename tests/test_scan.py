"""The scan runner: loop equivalence, masking, reverse, resets, carry, transforms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make, random_inputs

import seqnets as sn
from seqnets.backend import CPU_HOIST_MAX_ELEMENTS

B, T, F, H = 3, 7, 4, 5


def loop(cell, params, xs, carry=None):
    """The reference: a Python loop over cell.apply, batch-major."""
    carry = cell.initial_carry(xs.shape[0]) if carry is None else carry
    ys = []
    for t in range(xs.shape[1]):
        carry, h = cell.apply(params, carry, xs[:, t])
        ys.append(h)
    return carry, jnp.stack(ys, axis=1)


@pytest.fixture
def setup(cell_name):
    cell = make(cell_name, H)
    params = cell.init(jax.random.key(0), F)
    return cell, params, random_inputs(1, (B, T, F))


def test_scan_shapes_and_equals_python_loop(setup):
    cell, params, xs = setup
    carry, ys = sn.scan(cell, params, xs)
    chex.assert_shape(ys, (B, T, H))
    ref_carry, ref_ys = loop(cell, params, xs)
    chex.assert_trees_all_close((carry, ys), (ref_carry, ref_ys), atol=1e-6, rtol=1e-6)


def test_time_major_matches_batch_major(setup):
    cell, params, xs = setup
    carry, ys = sn.scan(cell, params, xs)
    carry_tm, ys_tm = sn.scan(cell, params, jnp.swapaxes(xs, 0, 1), time_major=True)
    chex.assert_shape(ys_tm, (T, B, H))
    chex.assert_trees_all_equal((carry, ys), (carry_tm, jnp.swapaxes(ys_tm, 0, 1)))


@pytest.mark.parametrize("unroll", [2, 7, True])
def test_unroll_gives_the_same_result(setup, unroll):
    cell, params, xs = setup
    ref = sn.scan(cell, params, xs)
    chex.assert_trees_all_close(sn.scan(cell, params, xs, unroll=unroll), ref, atol=1e-6)


def test_projection_inside_the_loop_gives_the_same_result(setup):
    cell, params, xs = setup
    lengths, resets = jnp.array([7, 3, 5]), jnp.zeros((B, T), bool).at[1, 2].set(True)
    for reverse in (False, True):
        kwargs = {"lengths": lengths, "resets": resets, "reverse": reverse}
        chex.assert_trees_all_close(
            sn.scan(cell, params, xs, hoist=False, **kwargs),
            sn.scan(cell, params, xs, hoist=True, **kwargs), atol=1e-6)


def test_default_hoists_on_cpu_only_small_projections():
    """On the CPU, hoist=None picks the hoisted form for small buffers, per step otherwise."""
    assert jax.default_backend() == "cpu"
    cell = sn.lstm(16)
    params = cell.init(jax.random.key(0), 3)

    def program(xs, **kwargs):
        return str(jax.make_jaxpr(lambda xs: sn.scan(cell, params, xs, **kwargs))(xs))

    limit = CPU_HOIST_MAX_ELEMENTS
    small = jnp.zeros((2, 5, 3))  # 2 * 5 * 64 projected elements
    large = jnp.zeros((8, limit // (8 * 64) + 1, 3))
    assert program(small) == program(small, hoist=True) != program(small, hoist=False)
    assert program(large) == program(large, hoist=False) != program(large, hoist=True)


def test_carry_crosses_calls(setup):
    cell, params, xs = setup
    full_carry, full_ys = sn.scan(cell, params, xs)
    carry, ys_a = sn.scan(cell, params, xs[:, :3])
    carry, ys_b = sn.scan(cell, params, xs[:, 3:], carry=carry)
    chex.assert_trees_all_close(
        (carry, jnp.concatenate([ys_a, ys_b], 1)), (full_carry, full_ys), atol=1e-6
    )


def test_lengths_match_each_row_run_alone(setup):
    cell, params, xs = setup
    lengths = jnp.array([7, 3, 0])
    carry, ys = sn.scan(cell, params, xs, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        row_carry, row_ys = sn.scan(cell, params, xs[b : b + 1, :n]) if n else (
            cell.initial_carry(1), jnp.zeros((1, 0, H)))
        chex.assert_trees_all_close(
            jax.tree.map(lambda c, b=b: c[b : b + 1], carry), row_carry, atol=1e-6
        )
        np.testing.assert_allclose(ys[b, :n], row_ys[0], atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)


def test_reverse_equals_running_the_flipped_valid_part(setup):
    cell, params, xs = setup
    lengths = jnp.array([7, 4, 1])
    carry, ys = sn.scan(cell, params, xs, lengths=lengths, reverse=True)
    for b, n in enumerate(lengths.tolist()):
        row_carry, row_ys = sn.scan(cell, params, xs[b : b + 1, :n][:, ::-1])
        chex.assert_trees_all_close(
            jax.tree.map(lambda c, b=b: c[b : b + 1], carry), row_carry, atol=1e-6
        )
        np.testing.assert_allclose(ys[b, :n], row_ys[0, ::-1], atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)


def test_reverse_without_lengths(setup):
    cell, params, xs = setup
    carry, ys = sn.scan(cell, params, xs, reverse=True)
    ref_carry, ref_ys = loop(cell, params, xs[:, ::-1])
    chex.assert_trees_all_close((carry, ys), (ref_carry, ref_ys[:, ::-1]), atol=1e-6)


def test_resets_equal_separate_runs(setup):
    cell, params, xs = setup
    # Row 0: episodes [0, 3) and [3, 7); row 1: [0, 5) and [5, 7); row 2: one episode.
    resets = np.zeros((B, T), bool)
    resets[0, 3] = resets[1, 5] = True
    start = cell.initial_carry(B)
    start = jax.tree.map(lambda c: c + 0.3, start)  # resets go to zeros, not to this carry
    carry, ys = sn.scan(cell, params, xs, carry=start, resets=jnp.asarray(resets))
    bounds = {0: 3, 1: 5}
    for b in range(B):
        first = jax.tree.map(lambda c, b=b: c[b : b + 1], start)
        if b in bounds:
            k = bounds[b]
            _, ys_a = sn.scan(cell, params, xs[b : b + 1, :k], carry=first)
            row_carry, ys_b = sn.scan(cell, params, xs[b : b + 1, k:])
            row_ys = jnp.concatenate([ys_a, ys_b], 1)
        else:
            row_carry, row_ys = sn.scan(cell, params, xs[b : b + 1], carry=first)
        np.testing.assert_allclose(ys[b : b + 1], row_ys, atol=1e-6)
        chex.assert_trees_all_close(
            jax.tree.map(lambda c, b=b: c[b : b + 1], carry), row_carry, atol=1e-6
        )


def test_reverse_resets_mark_the_same_episodes(setup):
    cell, params, xs = setup
    resets = np.zeros((B, T), bool)
    resets[:, 3] = True  # every row: episodes [0, 3) and [3, 7)
    lengths = jnp.array([7, 5, 2])
    _, ys = sn.scan(cell, params, xs, resets=jnp.asarray(resets), lengths=lengths, reverse=True)
    for b, n in enumerate(lengths.tolist()):
        pieces = [(0, min(3, n)), (3, n)] if n > 3 else [(0, n)]
        for lo, hi in pieces:
            _, ref = sn.scan(cell, params, xs[b : b + 1, lo:hi], reverse=True)
            np.testing.assert_allclose(ys[b, lo:hi], ref[0], atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)


def test_no_retracing_under_jit(setup):
    cell, params, xs = setup
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, xs, lengths):
        return sn.scan(cell, params, xs, lengths=lengths)

    run(params, xs, jnp.array([7, 2, 3]))
    run(params, xs + 1.0, jnp.array([1, 2, 3]))
    run(jax.tree.map(lambda p: p * 2, params), xs, jnp.array([7, 7, 7]))


def test_vmap_over_an_ensemble_of_parameters(setup):
    cell, _, xs = setup
    keys = jax.random.split(jax.random.key(5), 3)
    ensemble = jax.vmap(lambda k: cell.init(k, F))(keys)
    _, ys = jax.vmap(lambda p: sn.scan(cell, p, xs))(ensemble)
    chex.assert_shape(ys, (3, B, T, H))
    for i in range(3):
        one = jax.tree.map(lambda p, i=i: p[i], ensemble)
        np.testing.assert_allclose(ys[i], sn.scan(cell, one, xs)[1], atol=1e-6)


@pytest.mark.slow  # order-2 finite differences: about 20 s per cell; run with -m slow
def test_gradients_match_finite_differences(setup):
    cell, params, xs = setup
    lengths = jnp.array([7, 4, 2])

    def f(params, xs):
        carry, ys = sn.scan(cell, params, xs, lengths=lengths)
        return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    jax.test_util.check_grads(f, (params, xs), order=2, modes=("rev",), atol=2e-2, rtol=2e-2)


def test_gradient_through_padding_is_zero(setup):
    cell, params, xs = setup
    lengths = jnp.array([7, 4, 2])
    grad = jax.grad(lambda x: jnp.sum(sn.scan(cell, params, x, lengths=lengths)[1]))(xs)
    assert np.all(np.asarray(grad[1, 4:]) == 0) and np.all(np.asarray(grad[2, 2:]) == 0)
    assert np.any(np.asarray(grad[1, :4]) != 0)
