"""The layer options PyTorch, Haiku and Flax users expect (issue 25, section 6): an LSTM
projection (proj_size) and its PyTorch conversion, residual stacks, a merge function for
bidirectional layers, every step's carry, and no bias."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn
from seqnets import interop

B, T, F, H, P = 2, 5, 3, 6, 4


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def torch_lstmp_layer(x, w_ih, w_hh, b_ih, b_hh, w_hr):
    """PyTorch's nn.LSTM equations with proj_size (float64, x (B, T, F)): h is P wide."""
    h = np.zeros((x.shape[0], w_hr.shape[0]))
    c = np.zeros((x.shape[0], w_hr.shape[1]))
    out = []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = (sigmoid(o) * np.tanh(c)) @ w_hr.T
        out.append(h)
    return np.stack(out, 1)


def lstmp_state_dict(num_layers, bidirectional, seed=0):
    """What nn.LSTM(F, H, num_layers, bidirectional=..., proj_size=P).state_dict() holds."""
    rng = np.random.default_rng(seed)
    sd, inputs = {}, F
    for k in range(num_layers):
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            for name, shape in (("weight_ih", (4 * H, inputs)), ("weight_hh", (4 * H, P)),
                                ("bias_ih", (4 * H,)), ("bias_hh", (4 * H,)),
                                ("weight_hr", (P, H))):
                sd[f"{name}_l{k}{suffix}"] = rng.normal(0, 0.4, shape).astype(np.float32)
        inputs = P * (2 if bidirectional else 1)
    return sd


def test_lstm_projection_matches_pytorch_lstmp_and_converts_both_ways():
    # The issue: from_torch of such a layer said "proj_size is not supported".
    sd = lstmp_state_dict(2, True)
    model = sn.stack(sn.lstm(H, proj_size=P), num_layers=2, bidirectional=True)
    params = interop.from_torch(sd, model)
    assert model.output_size == 2 * P and params[0]["forward"]["w_hr"].shape == (H, P)
    x = np.random.default_rng(1).normal(size=(B, T, F))
    expected = x
    for k in range(2):
        args = [[sd[f"{n}_l{k}{s}"].astype(np.float64) for n in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
                for s in ("", "_reverse")]
        forward = torch_lstmp_layer(expected, *args[0])
        backward = torch_lstmp_layer(expected[:, ::-1], *args[1])[:, ::-1]
        expected = np.concatenate([forward, backward], axis=-1)
    carry, ys = model.apply(params, jnp.asarray(x, jnp.float32))
    # float32 against float64 over 2 layers of 5 steps: rounding of a few sums of ~10 terms.
    np.testing.assert_allclose(ys, expected, atol=1e-5, rtol=1e-5)
    assert carry[0]["forward"][0].shape == (B, H) and carry[0]["forward"][1].shape == (B, P)
    back = interop.to_torch(params, model)  # biases summed into bias_ih: the same function
    assert sorted(back) == sorted(sd)
    chex.assert_trees_all_equal(interop.from_torch(back, model), params)
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size"):
        sn.lstm(4, proj_size=4)
    with pytest.raises(ValueError, match="Flax's LSTM cells have no output projection"):
        interop.to_flax(params[0]["forward"], sn.lstm(H, proj_size=P))


def test_residual_stack_adds_each_layers_input_after_the_first():
    cell = sn.gru(H)
    model = sn.stack(cell, num_layers=3, residual=True)
    params = model.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    _, ys = model.apply(params, xs)
    _, y = sn.scan(cell, params[0]["forward"], xs)  # the first layer: no residual
    for layer in (1, 2):
        y = y + sn.scan(cell, params[layer]["forward"], y)[1]
    np.testing.assert_array_equal(ys, y)
    # One step at a time, the same residuals.
    _, y_t = model.step(params, model.initial_carry(B), xs[:, 0])
    np.testing.assert_allclose(y_t, ys[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="layer 1 outputs 8 features from an input of 6"):
        sn.stack([sn.gru(H), sn.gru(8)], residual=True)


@pytest.mark.parametrize("merge", ["sum", "mean", "product", "three_parts"])
def test_bidirectional_merge_functions(merge):
    merges = {"sum": ("sum", lambda f, b: f + b, H),
              "mean": ("mean", lambda f, b: (f + b) / 2, H),
              "product": (lambda f, b: f * b, lambda f, b: f * b, H),
              "three_parts": (lambda f, b: jnp.concatenate([f, b, f - b], -1),
                              lambda f, b: jnp.concatenate([f, b, f - b], -1), 3 * H)}
    given, manual, width = merges[merge]
    cell = sn.lstm(H)
    model = sn.stack(cell, num_layers=2, bidirectional=True, merge=given)
    assert model.output_size == width
    params = model.init(jax.random.key(0), F)
    assert params[1]["forward"]["w_x"].shape == (width, 4 * H)  # the next layer's input
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    lengths = jnp.array([T, 3])
    _, ys = model.apply(params, xs, lengths=lengths)
    y = xs
    for layer in range(2):
        forward = sn.scan(cell, params[layer]["forward"], y, lengths=lengths)[1]
        backward = sn.scan(cell, params[layer]["backward"], y, lengths=lengths, reverse=True)[1]
        y = manual(forward, backward)
    np.testing.assert_array_equal(ys, y)
    if merge != "three_parts":
        with pytest.raises(ValueError, match="no forward and backward halves"):
            sn.final_outputs(ys, stack=model)
    with pytest.raises(ValueError, match="merge must be one of"):
        sn.stack(cell, bidirectional=True, merge="max")


def step_by_step_carries(cell, params, xs, lengths=None, reverse=False):
    """The carry after each step from a Python loop over cell.apply (the reference)."""
    lengths = np.full(xs.shape[0], xs.shape[1]) if lengths is None else np.asarray(lengths)
    out = jax.tree.map(lambda c: np.zeros((xs.shape[0], xs.shape[1], *c.shape[1:]), c.dtype),
                       cell.initial_carry(xs.shape[0]))
    for row in range(xs.shape[0]):
        carry = cell.initial_carry(1)
        order = range(lengths[row])[::-1] if reverse else range(lengths[row])
        for t in order:
            carry, _ = cell.apply(params, carry, xs[row : row + 1, t])
            for leaf_out, leaf in zip(jax.tree.leaves(out), jax.tree.leaves(carry), strict=True):
                leaf_out[row, t] = np.asarray(leaf[0])
    return out


@pytest.mark.parametrize("name,mode", [("lstm", "auto"), ("min_gru", "chunked"),
                                       ("rg_lru", "parallel")])
def test_every_steps_carry_on_request(name, mode):
    # Haiku's return_all_states: e.g. the LSTM's c_t at every step.
    cell = {"lstm": sn.lstm, "min_gru": sn.min_gru, "rg_lru": sn.rg_lru}[name](H)
    params = cell.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    lengths = jnp.array([T, 3])
    for reverse in (False, True):
        _, ys, carries = sn.scan(cell, params, xs, lengths=lengths, reverse=reverse,
                                     mode=mode, return_all_carries=True)
        _, plain = sn.scan(cell, params, xs, lengths=lengths, reverse=reverse, mode=mode)
        np.testing.assert_array_equal(ys, plain)
        expected = step_by_step_carries(cell, params, np.asarray(xs), lengths, reverse)
        # float32 rounding: a hoisted (T*B, F) matmul and another mode's summation order
        # against one row at a time.
        chex.assert_trees_all_close(carries, expected, atol=2e-6)
    if name == "lstm":
        assert carries[0].shape == (B, T, H)  # c_t


def test_every_steps_carry_of_a_stack_and_of_another_family():
    model = sn.stack(sn.gru(H), num_layers=2, bidirectional=True)
    params = model.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    carry, _, carries = model.apply(params, xs, return_all_carries=True)
    assert jax.tree.map(jnp.shape, carries) == [{"forward": (B, T, H), "backward": (B, T, H)}] * 2
    np.testing.assert_array_equal(carries[1]["forward"][:, -1], carry[1]["forward"])
    np.testing.assert_array_equal(carries[1]["backward"][:, 0], carry[1]["backward"])
    # A cell of another recurrence family runs its step once per time step for this.
    gru = sn.gru(H)
    other = gru._replace(recurrence=sn.Recurrence("nonlinear", run=None))
    _, _, per_step = sn.scan(other, params[0]["forward"], xs, return_all_carries=True)
    _, _, expected = sn.scan(gru, params[0]["forward"], xs, return_all_carries=True)
    np.testing.assert_array_equal(per_step, expected)
    with pytest.raises(ValueError, match="one step at a time, which is mode 'sequential'"):
        sn.scan(other, params[0]["forward"], xs, return_all_carries=True, mode="parallel")


def test_no_bias_cells_and_pytorch_bias_false():
    for factory in (sn.lstm, sn.layer_norm_lstm, sn.gru, sn.elman, sn.irnn, sn.min_gru,
                    sn.min_lstm, sn.rg_lru):
        cell = factory(H, use_bias=False)
        params = cell.init(jax.random.key(0), F)
        assert not {"b", "b_hn", "b_c"} & set(params), factory.__name__
        _, ys = sn.scan(cell, params, jnp.ones((B, T, F)))
        assert ys.shape == (B, T, H)
    # nn.LSTMCell(F, H, bias=False).state_dict() has no bias keys.
    rng = np.random.default_rng(2)
    sd = {"weight_ih": rng.normal(0, 0.4, (4 * H, F)).astype(np.float32),
          "weight_hh": rng.normal(0, 0.4, (4 * H, H)).astype(np.float32)}
    params = interop.from_torch(sd, sn.lstm(H, use_bias=False))
    assert sorted(params) == ["w_h", "w_x"]
    assert sorted(interop.to_torch(params, sn.lstm(H, use_bias=False))) == sorted(sd)
    with_bias = interop.from_torch(sd, sn.lstm(H))  # a cell with biases gets zero biases
    np.testing.assert_array_equal(with_bias["b"], np.zeros(4 * H))
    _, ys = sn.scan(sn.lstm(H, use_bias=False), params, jnp.ones((B, T, F)))
    _, ys_zero_bias = sn.scan(sn.lstm(H), with_bias, jnp.ones((B, T, F)))
    np.testing.assert_array_equal(ys, ys_zero_bias)
    layers = interop.from_torch({f"{k}_l0": v for k, v in sd.items()},
                                sn.stack(sn.lstm(H, use_bias=False)))
    assert sorted(layers[0]["forward"]) == ["w_h", "w_x"]
