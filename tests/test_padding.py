"""Padding never poisons gradients: NaN or infinite padded inputs act exactly like zeros.

The reproduction of issue 11: NaN padding after a row's length made every gradient NaN
while the forward pass stayed finite (0 * NaN in the backward pass of the masked steps).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make, random_inputs

import seqnets as sn

B, T, F, H = 3, 6, 4, 5
LENGTHS = jnp.array([6, 2, 4])
PAD = np.arange(T)[None, :] >= np.asarray(LENGTHS)[:, None]  # (batch, time)


def padded(fill):
    xs = random_inputs(1, (B, T, F))
    return jnp.where(PAD[..., None], fill, xs)


def grads(run, params, xs, carry):
    """Gradients of a loss on every output and on the final carry, w.r.t. all inputs."""

    def loss(params, xs, carry):
        final, ys = run(params, xs, carry)
        return jnp.sum(ys**2) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(final))

    return jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)


@pytest.mark.parametrize(("hoist", "reverse"), [(True, False), (False, True)])
def test_non_finite_padding_gives_the_gradients_of_zero_padding(cell_name, hoist, reverse):
    cell = make(cell_name, H)
    params = cell.init(jax.random.key(0), F)
    carry = jax.tree.map(lambda c: c + 0.1, cell.initial_carry(B))
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True)

    def run(params, xs, carry):
        return sn.scan(cell, params, xs, carry=carry, lengths=LENGTHS, resets=resets,
                       reverse=reverse, hoist=hoist)

    forward_and_grads = jax.jit(lambda *a: (run(*a), grads(run, *a)))
    want = forward_and_grads(params, padded(0.0), carry)
    for fill in (np.nan, np.inf, -np.inf):
        got = forward_and_grads(params, padded(fill), carry)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(got)), fill
        chex.assert_trees_all_equal(got, want)  # exactly: the padded values are never read
        np.testing.assert_array_equal(np.asarray(got[1][1])[PAD], 0.0)


def test_issue_reproduction_lstm_nan_padding():
    cell = sn.lstm(2)
    p = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 4, 3)).at[1, 2:].set(jnp.nan)

    def f(p, xs):
        return sn.scan(cell, p, xs, lengths=jnp.array([4, 2]))[1].sum()

    g_params, g_xs = jax.grad(f, argnums=(0, 1))(p, xs)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(g_params))
    np.testing.assert_array_equal(g_xs[1, 2:], 0.0)
    assert np.isfinite(g_xs).all()


def test_bidirectional_stack_with_non_finite_padding():
    model = sn.stack(sn.gru(H), num_layers=2, bidirectional=True)
    params = model.init(jax.random.key(0), F)

    def run(params, xs, carry):
        return model.apply(params, xs, carry=carry, lengths=LENGTHS)

    carry = model.initial_carry(B)
    grads_of = jax.jit(lambda *a: grads(run, *a))
    want = grads_of(params, padded(0.0), carry)
    for fill in (np.nan, -np.inf):
        got = grads_of(params, padded(fill), carry)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(got)), fill
        chex.assert_trees_all_equal(got, want)
