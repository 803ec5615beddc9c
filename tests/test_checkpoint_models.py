"""Checkpoints of any pytree, parameters alone, and the model's configuration (issue 25,
section 4), written as the issue's user wrote them."""

import json

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import seqnets as sn
from seqnets.training import Checkpointer, create_train_state
from seqnets.training.checkpoint import load_model

MODEL = sn.stack(sn.lstm(6, proj_size=4), num_layers=2, bidirectional=True, merge="sum",
                 dtype=jnp.bfloat16)


def model_params():
    return {"rnn": MODEL.init(jax.random.key(0), 3), "head": jnp.ones((4, 2))}


def test_parameters_alone_save_restore_and_load_for_inference(tmp_path):
    params = model_params()
    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1, model=MODEL)
    # Was: AttributeError: 'dict' object has no attribute 'step'.
    with pytest.raises(ValueError, match=r"pass step=\.\.\..*ckpt\.save\(params, step="):
        ckpt.save(params)
    assert ckpt.save(params, step=10)
    chex.assert_trees_all_equal(ckpt.restore(params), params)
    ckpt.close()
    # From the folder alone: the model rebuilt from its saved configuration, its params.
    model, saved = load_model(tmp_path / "ckpt")
    assert model == MODEL
    chex.assert_trees_all_equal(saved, params)
    _, ys = model.apply(saved["rnn"], jnp.ones((2, 5, 3)))
    assert ys.shape == (2, 5, 4) and ys.dtype == jnp.bfloat16


def test_restore_only_the_parameters_of_a_train_state_and_another_optimizer(tmp_path):
    params = model_params()
    state = create_train_state(params, optax.adam(1e-3), jax.random.key(1))
    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1, model=MODEL)
    ckpt.save(state)
    # Another optimizer: the message names the optimizer state, not "another model".
    sgd_state = create_train_state(params, optax.sgd(0.1, momentum=0.9), jax.random.key(1))
    with pytest.raises(ValueError, match=r"holds the same parameters as the state to restore "
                                         r"into, but another optimizer state: .*restore_params"):
        ckpt.restore(sgd_state)
    # The parameters alone, into a new optimizer's state.
    restored = ckpt.restore_params(like=params)
    chex.assert_trees_all_equal(restored, params)
    new_state = create_train_state(restored, optax.sgd(0.1, momentum=0.9), jax.random.key(2))
    assert int(new_state.step) == 0
    chex.assert_trees_all_equal(ckpt.restore_params(), params)  # no like: the saved layout
    # A like of another model says which arrays differ.
    with pytest.raises(ValueError, match="are not those of `like`"):
        ckpt.restore_params(like={"rnn": params["rnn"], "head": jnp.ones((5, 2))})
    assert ckpt.saved_model() == MODEL
    ckpt.close()


def test_another_model_still_says_another_model(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1)
    ckpt.save(create_train_state(model_params(), optax.adam(1e-3), jax.random.key(1)))
    other = {"rnn": MODEL.init(jax.random.key(0), 3), "head": jnp.ones((4, 3))}
    # The moments have the parameters' shapes: the difference is counted as a multiset.
    with pytest.raises(ValueError, match=r"holds another model .*saved but not expected: "
                                         r"\[\(\(4, 2\), 'float32'\)"):
        ckpt.restore(create_train_state(other, optax.adam(1e-3), jax.random.key(1)))
    ckpt.close()


def test_model_configurations_survive_json():
    models = [
        sn.lstm(8, proj_size=3, forget_bias=0.5, use_bias=False, param_dtype=jnp.bfloat16),
        sn.elman(5, activation=jax.nn.relu, recurrent_init=sn.initializers.lecun_normal),
        sn.irnn(4, scale=0.5), sn.lru(6, 12, r_min=0.5), sn.s6(8, 4, dt_rank=2),
        sn.stack([sn.gru(4), sn.min_gru(4)], residual=True, dropout=0.2),
    ]
    for model in models:
        config = json.loads(json.dumps(sn.to_config(model)))
        assert sn.from_config(config) == model, config
    with pytest.raises(ValueError, match=r"seqnets.elman\(recurrent_init=\.\.\.\) is .*cannot hold"):
        sn.to_config(sn.elman(4, recurrent_init=sn.initializers.identity(0.5)))
    leaky = sn.make_cell(init=lambda k, n: {}, initial_carry=lambda b: jnp.zeros((b, 1)),
                         project=lambda p, x: x[..., :1], step=lambda p, h, x: (h, h),
                         hidden_size=1, name="leaky")
    with pytest.raises(ValueError, match="not built by a seqnets cell constructor"):
        sn.to_config(leaky)
