"""Flax NNX (issue 25, section 1): seqnets.nnx.RNN trains a stack under nnx.jit and
nnx.Optimizer, and the converters read and write NNX cells' parameters."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqnets as sn
from seqnets import interop


class Classifier(nnx.Module):
    """The issue's model: a seqnets stack inside an nnx.Module, a Linear head."""

    def __init__(self, rngs: nnx.Rngs):
        model = sn.stack(sn.lstm(16), num_layers=2, dropout=0.1)
        self.rnn = sn.nnx.RNN(model, 8, rngs=rngs)
        self.head = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, xs, lengths=None):
        ys = self.rnn(xs, lengths=lengths)
        return self.head(sn.final_outputs(ys, lengths=lengths))


def test_a_stack_trains_under_nnx_jit_and_nnx_optimizer():
    # Before: "pytree structure error: different types at key path ..." (a list of dicts
    # inside one nnx.Param).
    model = Classifier(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, xs, lengths, labels):
        def loss_fn(model):
            logits = model(xs, lengths)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    xs = jax.random.normal(jax.random.key(1), (8, 6, 8))
    lengths, labels = jnp.array([6, 5, 4, 3, 6, 5, 4, 3]), jnp.arange(8) % 4
    before = model.rnn.stack_params()
    losses = [float(train_step(model, optimizer, xs, lengths, labels)) for _ in range(10)]
    assert losses[-1] < 0.7 * losses[0], losses
    after = model.rnn.stack_params()
    assert not np.allclose(after[0]["forward"]["w_h"], before[0]["forward"]["w_h"])
    # One nnx.Param per array, in seqnets' layout (the pure functions read it as it is).
    params = nnx.state(model, nnx.Param)["rnn"]["params"]
    assert isinstance(params[1]["forward"]["w_x"], nnx.Param)

    @nnx.jit
    def twice(model, xs, lengths):
        return model.rnn(xs, lengths=lengths), model.rnn(xs, lengths=lengths)

    # eval() turns dropout off: the pure function's result; in training, each call draws
    # new masks from the dropout stream.
    model.eval()
    first, second = twice(model, xs, lengths)
    _, ys = jax.jit(model.rnn.model.apply)(after, xs, lengths=lengths)
    np.testing.assert_array_equal(first, ys)
    np.testing.assert_array_equal(second, ys)
    model.train()
    first, second = twice(model, xs, lengths)
    assert not np.allclose(first, second) and not np.allclose(first, ys)


def test_every_scan_option_goes_through():
    model = sn.stack(sn.gru(5), num_layers=2, bidirectional=True, merge="sum")
    rnn = sn.nnx.RNN(model, 3, rngs=nnx.Rngs(params=0), time_major=True, checkpoint=2)
    xs = jax.random.normal(jax.random.key(1), (2, 4, 3))
    resets = jnp.zeros((2, 4), bool).at[1, 2].set(True)
    lengths = jnp.array([4, 3])

    @nnx.jit
    def run(rnn, xs):  # time-major in, time-major out
        return rnn(jnp.swapaxes(xs, 0, 1), lengths=lengths, resets=resets.T,
                   return_all_carries=True)

    carry, ys, carries = run(rnn, xs)
    expected = jax.jit(model.apply)(rnn.stack_params(), xs, lengths=lengths, resets=resets)
    # checkpoint=2 recomputes the same float32 operations in blocks.
    chex.assert_trees_all_close((carry, jnp.swapaxes(ys, 0, 1)), expected, atol=1e-6)
    assert carries[0]["forward"].shape == (4, 2, 5) and rnn.output_size == 5


def nnx_cell(kind):
    return {"LSTMCell": nnx.LSTMCell, "OptimizedLSTMCell": nnx.OptimizedLSTMCell,
            "GRUCell": nnx.GRUCell, "SimpleCell": nnx.SimpleCell}[kind](3, 4, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("kind,name", [("LSTMCell", "lstm"), ("OptimizedLSTMCell", "lstm"),
                                       ("GRUCell", "gru"), ("SimpleCell", "elman")])
def test_nnx_cells_parameters_convert_both_ways(kind, name):
    # Before: from_flax said "Flax parameters lack if/kernel; found keys ['hf', ..., 'if_']".
    flax_cell = nnx_cell(kind)
    state = nnx.state(flax_cell, nnx.Param)
    cell = getattr(sn, name)(4)
    params = interop.from_nnx(state, cell)
    chex.assert_trees_all_equal(params, interop.from_nnx(nnx.to_pure_dict(state), name))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    _, ys = sn.scan(cell, params, xs)
    # The same float32 function, up to the summation order of NNX's per-gate matmuls.
    np.testing.assert_allclose(ys, nnx.RNN(flax_cell)(xs), atol=1e-6)
    back = interop.to_nnx(params, cell, fused=kind == "OptimizedLSTMCell")
    chex.assert_trees_all_equal(back, nnx.to_pure_dict(state))
    # Loading the result into a fresh NNX cell gives back the same module.
    other = nnx_cell(kind)
    other_state = nnx.state(other, nnx.Param)
    nnx.replace_by_pure_dict(other_state, back)
    nnx.update(other, other_state)
    np.testing.assert_array_equal(nnx.RNN(other)(xs), nnx.RNN(flax_cell)(xs))


def test_nnx_conversion_errors_name_the_problem():
    params = sn.gru(4).init(jax.random.key(0), 3)
    params["b_hn"] = params["b_hn"] + 1.0
    with pytest.raises(ValueError, match=r"nnx\.GRUCell has no such bias"):
        interop.to_nnx(params, sn.gru(4))
    with pytest.raises(ValueError, match=r"NNX parameters lack dense_i/kernel"):
        interop.from_nnx({"kernel": jnp.ones((3, 4))}, "elman")
    with pytest.raises(ValueError, match="Flax NNX has no layers module"):
        interop.from_nnx({}, sn.stack(sn.lstm(4)))
    with pytest.raises(ValueError, match="always have biases"):
        interop.to_nnx(sn.lstm(4, use_bias=False).init(jax.random.key(0), 3),
                       sn.lstm(4, use_bias=False))
