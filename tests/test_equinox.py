"""Equinox (issue 25, section 2): seqnets.equinox.RNN takes one unbatched sequence and
batches with jax.vmap, as Equinox's own layers do.

Equinox is an extra (``pip install 'seqnets[equinox]'``, part of ``[test]``).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

eqx = pytest.importorskip("equinox")

import seqnets as sn  # noqa: E402


class Classifier(eqx.Module):
    """The issue's model, without the glue: no x[None], no jax.vmap(self.head)."""

    rnn: sn.equinox.RNN
    head: eqx.nn.Linear

    def __init__(self, key):
        k_rnn, k_head = jax.random.split(key)
        model = sn.stack(sn.gru(16), num_layers=2, dropout=0.1)
        self.rnn = sn.equinox.RNN(model, 8, key=k_rnn)
        self.head = eqx.nn.Linear(16, 4, key=k_head)

    def __call__(self, x, *, key=None):  # x: (time, features), one example
        return self.head(self.rnn(x, key=key)[-1])


def test_an_unbatched_sequence_in_an_equinox_model_trains_with_vmap():
    model = Classifier(jax.random.key(0))
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def train_step(model, opt_state, xs, labels, key):
        def loss_fn(model):
            logits = jax.vmap(model)(xs, key=jax.random.split(key, xs.shape[0]))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    xs = jax.random.normal(jax.random.key(1), (8, 20, 8))  # (batch, time, features)
    labels = jnp.arange(8) % 4
    losses = []
    for step in range(10):
        model, opt_state, loss = train_step(model, opt_state, xs, labels, jax.random.key(step))
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    # In inference mode, vmap over the batch is the batched stack itself.
    model = eqx.nn.inference_mode(model)
    assert model.rnn.inference
    ys = eqx.filter_jit(lambda rnn, xs: jax.vmap(rnn)(xs))(model.rnn, xs)
    _, expected = jax.jit(model.rnn.model.apply)(model.rnn.params, xs)
    np.testing.assert_allclose(ys, expected, atol=1e-6)  # batch 1 under vmap vs batch 8


def test_lengths_carry_and_resets_of_one_sequence():
    rnn = sn.equinox.RNN(sn.lstm(5), 3, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (4, 6, 3))
    lengths = jnp.array([6, 4, 0, 2])
    resets = jnp.zeros((4, 6), bool).at[:, 3].set(True)

    @jax.jit
    def both(xs, lengths, resets):
        one = jax.vmap(lambda x, n, r: rnn(x, lengths=n, resets=r, return_carry=True))
        return one(xs, lengths, resets), rnn.model.apply(rnn.params, xs, lengths=lengths,
                                                         resets=resets)

    (carry, ys), (batch_carry, batch_ys) = both(xs, lengths, resets)
    chex.assert_trees_all_close((carry, ys), (batch_carry, batch_ys), atol=1e-6)
    # A carry without batch axis goes back in to continue the sequence.
    c0 = rnn.initial_carry()
    assert jax.tree.map(jnp.shape, c0) == [{"forward": ((5,), (5,))}]
    carry, ys, carries = rnn(xs[0], carry=c0, return_all_carries=True)
    assert carries[0]["forward"][0].shape == (6, 5) and ys.shape == (6, 5)


def test_errors_name_the_equinox_way():
    rnn = sn.equinox.RNN(sn.stack(sn.lstm(4), dropout=0.5, num_layers=2), 3,
                         key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"one unbatched sequence \(time, features\).*jax.vmap"):
        rnn(jnp.ones((2, 5, 3)), key=jax.random.key(1))
    with pytest.raises(ValueError, match="needs a key when not in inference mode"):
        rnn(jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="lengths is one sequence's number of valid steps"):
        rnn(jnp.ones((5, 3)), lengths=jnp.array([3]), inference=True)
    assert rnn(jnp.ones((5, 3)), inference=True).shape == (5, 4)
