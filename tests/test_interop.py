"""Parity with flax.linen cells and with NumPy references of PyTorch's RNN equations.

torch itself is not needed: PyTorch's modules are stood in for by state dicts of NumPy
arrays with its names and a float64 NumPy implementation of its documented equations.
"""

import subprocess
import sys
import warnings

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn
from seqnets import interop

B, T, F, H = 3, 6, 4, 5
FLAX = {
    "LSTMCell": (nn.LSTMCell, sn.lstm),
    "OptimizedLSTMCell": (nn.OptimizedLSTMCell, sn.lstm),
    "GRUCell": (nn.GRUCell, sn.gru),
    "SimpleCell": (nn.SimpleCell, sn.elman),
}


@pytest.mark.parametrize("name", sorted(FLAX))
def test_flax_cells_match_with_converted_weights(name):
    flax_cls, factory = FLAX[name]
    flax_cell = flax_cls(features=H)
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    carry0 = flax_cell.initialize_carry(jax.random.key(0), (B, F))
    variables = flax_cell.init(jax.random.key(2), carry0, xs[:, 0])
    # Non-zero biases, so that the bias layout is checked too.
    variables = jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), variables
    )
    flax_carry, flax_ys = nn.RNN(flax_cell, return_carry=True).apply(
        {"params": {"cell": variables["params"]}}, xs
    )

    cell = factory(H)
    params = interop.from_flax(variables, cell)
    carry, ys = sn.scan(cell, params, xs)
    chex.assert_trees_all_close((carry, ys), (flax_carry, flax_ys), atol=1e-5, rtol=1e-5)
    # Exact round trip, and the cell's name alone gives the same conversion.
    chex.assert_trees_all_equal(interop.to_flax(params, cell), variables["params"])
    chex.assert_trees_all_equal(interop.from_flax(variables["params"], cell.name), params)


# --- PyTorch: NumPy references written from PyTorch's documented equations -------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def torch_lstm_layer(x, w_ih, w_hh, b_ih, b_hh):
    """x: (B, T, F) float64; returns outputs (B, T, H) and (h, c) after the last step."""
    hidden = w_hh.shape[1]
    h = np.zeros((x.shape[0], hidden))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, 1), (h, c)


def torch_gru_layer(x, w_ih, w_hh, b_ih, b_hh):
    hidden = w_hh.shape[1]
    h = np.zeros((x.shape[0], hidden))
    out = []
    for t in range(x.shape[1]):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = np.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, 1), (h,)


def torch_rnn_layer(x, w_ih, w_hh, b_ih, b_hh):
    h = np.zeros((x.shape[0], w_hh.shape[1]))
    out = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        out.append(h)
    return np.stack(out, 1), (h,)


def torch_network(layer_fn, state_dict, x, num_layers, bidirectional):
    """PyTorch's multi-layer, optionally bidirectional RNN over (B, T, F)."""
    for k in range(num_layers):
        outs = []
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            args = [state_dict[f"{n}_l{k}{suffix}"].astype(np.float64)
                    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            inp = x[:, ::-1] if suffix else x
            y, _ = layer_fn(inp, *args)
            outs.append(y[:, ::-1] if suffix else y)
        x = np.concatenate(outs, axis=-1)
    return x


def random_state_dict(gates, num_layers, bidirectional, seed=0):
    """What nn.LSTM/GRU/RNN(F, H, num_layers, bidirectional=...).state_dict() holds."""
    rng = np.random.default_rng(seed)
    sd, inputs = {}, F
    for k in range(num_layers):
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            sd[f"weight_ih_l{k}{suffix}"] = rng.normal(0, 0.4, (gates * H, inputs))
            sd[f"weight_hh_l{k}{suffix}"] = rng.normal(0, 0.4, (gates * H, H))
            sd[f"bias_ih_l{k}{suffix}"] = rng.normal(0, 0.4, (gates * H,))
            sd[f"bias_hh_l{k}{suffix}"] = rng.normal(0, 0.4, (gates * H,))
        inputs = H * (2 if bidirectional else 1)
    return {k: v.astype(np.float32) for k, v in sd.items()}


TORCH = {
    "lstm": (4, torch_lstm_layer, sn.lstm),
    "gru": (3, torch_gru_layer, sn.gru),
    "elman": (1, torch_rnn_layer, sn.elman),
}


@pytest.mark.parametrize("kind", sorted(TORCH))
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_torch_state_dicts_match_numpy_reference(kind, num_layers, bidirectional):
    gates, layer_fn, factory = TORCH[kind]
    sd = random_state_dict(gates, num_layers, bidirectional)
    x = np.random.default_rng(1).normal(size=(B, T, F)).astype(np.float32)
    expected = torch_network(layer_fn, sd, x.astype(np.float64), num_layers, bidirectional)

    model = sn.stack(factory(H), num_layers=num_layers, bidirectional=bidirectional)
    params = interop.from_torch(sd, model)
    _, ys = model.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(ys, expected, atol=1e-5, rtol=1e-5)
    # The cell, or its name, gives the same parameters: the keys decide the form.
    chex.assert_trees_all_equal(interop.from_torch(sd, factory(H)), params)
    chex.assert_trees_all_equal(interop.from_torch(sd, kind), params)

    # Writing back gives a state_dict that computes the same function.
    back = interop.to_torch(jax.tree.map(np.asarray, params), model)
    assert sorted(back) == sorted(sd)
    again = torch_network(layer_fn, back, x.astype(np.float64), num_layers, bidirectional)
    np.testing.assert_allclose(again, expected, atol=1e-5)


def test_torch_conversion_errors_name_the_problem():
    sd = random_state_dict(4, 1, False)
    with pytest.raises(ValueError, match="unexpected key 'weight_xx_l0'"):
        interop.from_torch({**sd, "weight_xx_l0": np.zeros((5, 5))}, "lstm")
    # An LSTM's projection (proj_size, issue 25) is read, and its shape checked.
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \(4\*H, P\)"):
        interop.from_torch({**sd, "weight_hr_l0": np.zeros((3, 5))}, "lstm")
    with pytest.raises(ValueError, match="a gru has none"):
        interop.from_torch({**random_state_dict(3, 1, False), "weight_hr_l0": np.zeros((3, 5))},
                           "gru")
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \(4\*H, H\)"):
        interop.from_torch({**sd, "weight_hh_l0": np.zeros((15, 5))}, "lstm")
    with pytest.raises(ValueError, match="missing key 'weight_ih_l0'"):
        interop.from_torch({k: v for k, v in sd.items() if k != "weight_ih_l0"}, "lstm")
    with pytest.raises(ValueError, match="empty"):
        interop.from_torch({}, "lstm")


def cell_state_dict(stack_state_dict):
    """nn.LSTMCell/GRUCell/RNNCell's keys: a one-layer module's without the ``_l0``."""
    return {k.removesuffix("_l0"): v for k, v in stack_state_dict.items()}


@pytest.mark.parametrize("kind", sorted(TORCH))
def test_torch_cell_state_dicts_give_one_cells_params(kind):
    gates, layer_fn, factory = TORCH[kind]
    layers_sd = random_state_dict(gates, 1, False, seed=2)
    sd = cell_state_dict(layers_sd)
    assert sorted(sd) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]
    x = np.random.default_rng(3).normal(size=(B, T, F)).astype(np.float32)
    expected = torch_network(layer_fn, layers_sd, x.astype(np.float64), 1, False)

    params = interop.from_torch(sd, factory(H))
    assert isinstance(params, dict)  # one cell's params, as the Flax converters give
    chex.assert_trees_all_equal(params, interop.from_torch(layers_sd, kind)[0]["forward"])
    _, ys = sn.scan(factory(H), params, jnp.asarray(x))
    np.testing.assert_allclose(ys, expected, atol=1e-5, rtol=1e-5)
    # For a one-layer stack, a cell's state_dict gives that stack's params.
    chex.assert_trees_all_equal(interop.from_torch(sd, sn.stack(factory(H))), [{"forward": params}])

    back = interop.to_torch(params, factory(H))
    assert sorted(back) == sorted(sd)
    again = torch_network(layer_fn, {f"{k}_l0": v for k, v in back.items()},
                          x.astype(np.float64), 1, False)
    np.testing.assert_allclose(again, expected, atol=1e-5)


def test_torch_conversion_rejects_mixed_forms_and_bad_params():
    sd = random_state_dict(4, 1, False)
    with pytest.raises(ValueError, match="mixes a cell's keys"):
        interop.from_torch({**sd, "weight_ih": sd["weight_ih_l0"]}, "lstm")
    with pytest.raises(ValueError, match=r"to_torch\(params, 'gru'\): expected one `gru` cell's params"):
        interop.to_torch([{"forward": {"kernel": np.zeros((2, 2))}}], "gru")
    with pytest.raises(ValueError, match="non-empty list"):
        interop.to_torch([], "lstm")


def test_the_model_named_is_checked():
    """A Cell or Stack checks what it is given; a message names the mismatch and the fix."""
    sd = random_state_dict(4, 2, True)  # nn.LSTM(F, H, num_layers=2, bidirectional=True)
    params = interop.from_torch(sd, "lstm")
    with pytest.raises(ValueError, match=r"layer 0 forward: parameter b has shape \(20,\); the cell "
                       r"expects \(32,\).*another hidden size"):
        interop.from_torch(sd, sn.lstm(8))  # another hidden size
    with pytest.raises(ValueError, match=r"the stack has 2 layers with directions \['forward'\]"):
        interop.from_torch(sd, sn.stack(sn.lstm(H), num_layers=2))  # not bidirectional
    with pytest.raises(ValueError, match="the stack has 3 layers"):
        interop.to_torch(params, sn.stack(sn.lstm(H), num_layers=3, bidirectional=True))
    with pytest.raises(ValueError, match="Pass the cell instead of the stack"):
        interop.to_torch(params[0]["forward"], sn.stack(sn.lstm(H)))
    with pytest.raises(ValueError, match=r"the stack mixes cells \['gru', 'lstm'\]"):
        interop.from_torch(sd, sn.stack([sn.lstm(H), sn.gru(H)]))
    with pytest.raises(ValueError, match="missing b_hn"):
        interop.to_torch(params[0]["forward"], sn.gru(H))  # lstm params for a gru
    with pytest.raises(ValueError, match="Flax linen has no layers module"):
        interop.from_flax({}, sn.stack(sn.lstm(H)))
    with pytest.raises(ValueError, match="expected a seqnets Cell"):
        interop.to_flax(params[0]["forward"], nn.LSTMCell(features=H))


def test_the_registry_is_keyed_by_framework_and_cell():
    assert set(interop.registered()) == {(f, c) for f in ("flax", "nnx", "torch")
                                         for c in ("lstm", "gru", "elman")}
    assert set(interop.registered("flax")) == {("flax", c) for c in ("lstm", "gru", "elman")}
    with pytest.raises(ValueError, match=r"no torch converter for the 'min_gru' cell; torch "
                       r"converters exist for \['elman', 'gru', 'lstm'\]"):
        interop.from_torch({}, sn.min_gru(H))
    with pytest.raises(ValueError, match="registered already"):
        interop.register("flax", "lstm", interop.registered()[("flax", "lstm")])


def test_a_new_cell_is_one_registration(monkeypatch):
    """A cell of one's own: one register call, and the entry points find it by its name."""
    from seqnets.interop import registry

    monkeypatch.setattr(registry, "_CONVERTERS", dict(registry._CONVERTERS))  # undone after
    cell = sn.make_cell(
        init=lambda key, n: {"w_x": jnp.zeros((n, H)), "w_h": jnp.zeros((H, H))},
        initial_carry=lambda b: jnp.zeros((b, H)),
        project=lambda p, x: x @ p["w_x"],
        step=lambda p, h, px: (jnp.tanh(px + h @ p["w_h"]),) * 2,
        hidden_size=H, name="no_bias_elman")
    interop.register("flax", "no_bias_elman", interop.Converter(
        read=lambda f: {"w_x": f["i"]["kernel"], "w_h": f["h"]["kernel"]},
        write=lambda p: {"i": {"kernel": p["w_x"]}, "h": {"kernel": p["w_h"]}},
        counterpart="flax.linen.SimpleCell(use_bias=False)"))
    flax_params = {"i": {"kernel": jnp.ones((F, H))}, "h": {"kernel": jnp.eye(H)}}
    params = interop.from_flax(flax_params, cell)
    chex.assert_trees_all_equal(interop.to_flax(params, cell), flax_params)
    with pytest.raises(ValueError, match=r"w_h has shape \(2, 2\); the cell expects \(5, 5\)"):
        interop.from_flax({"i": {"kernel": jnp.ones((F, 2))}, "h": {"kernel": jnp.eye(2)}}, cell)


def flax_simple_variables():
    flax_cell = nn.SimpleCell(features=H)
    x = jax.random.normal(jax.random.key(1), (B, F))
    carry = flax_cell.initialize_carry(jax.random.key(0), (B, F))
    variables = flax_cell.init(jax.random.key(2), carry, x)
    return jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), variables)


def flax_variables(name):
    flax_cls, _ = FLAX[name]
    flax_cell = flax_cls(features=H)
    carry = flax_cell.initialize_carry(jax.random.key(0), (B, F))
    return flax_cell.init(jax.random.key(2), carry, jnp.ones((B, F)))


# The deprecated names of 0.1.0: (old name, replacement, cell, argument).
GATES = {"lstm": 4, "gru": 3, "elman": 1}
FLAX_OF = {"lstm": "LSTMCell", "gru": "GRUCell", "elman": "SimpleCell"}


def deprecated_cases():
    cases = []
    for cell, gates in GATES.items():
        variables = flax_variables(FLAX_OF[cell])
        sd = random_state_dict(gates, 2, True)
        cases += [
            (f"from_flax_{cell}", "from_flax", cell, variables),
            (f"to_flax_{cell}", "to_flax", cell, interop.from_flax(variables, cell)),
            (f"from_torch_{cell}", "from_torch", cell, sd),
            (f"to_torch_{cell}", "to_torch", cell,
             jax.tree.map(np.asarray, interop.from_torch(sd, cell))),
        ]
    variables = flax_simple_variables()
    sd = random_state_dict(1, 2, True)
    return [*cases,
            ("from_flax_simple", "from_flax", "elman", variables),
            ("to_flax_simple", "to_flax", "elman", interop.from_flax(variables, "elman")),
            ("from_torch_rnn", "from_torch", "elman", sd),
            ("to_torch_rnn", "to_torch", "elman",
             jax.tree.map(np.asarray, interop.from_torch(sd, "elman"))),
            ("from_torch_rnn", "from_torch", "elman", cell_state_dict(random_state_dict(1, 1, False)))]


@pytest.mark.parametrize("case", range(17))
def test_deprecated_aliases_warn_and_give_identical_results(case):
    old, new, cell, argument = deprecated_cases()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name must not warn
        expected = getattr(interop, new)(argument, cell)
    message = rf"{old} is deprecated.*0\.2\.0; use seqnets\.interop\.{new}\(params, '{cell}'\)"
    with pytest.warns(DeprecationWarning, match=message) as record:
        got = getattr(interop, old)(argument)
    assert len(record) == 1
    assert record[0].filename == __file__  # stacklevel points at the caller's line
    chex.assert_trees_all_equal(got, expected)
    assert getattr(interop, old).__name__ == old
    # The submodules carry the aliases too.
    module = interop.flax if "flax" in old else interop.torch
    assert getattr(module, old) is getattr(interop, old)


def test_every_old_name_is_a_deprecated_alias():
    old = {n for n in interop.__all__ if n.startswith(("from_", "to_")) and n.count("_") == 2}
    assert old == {c[0] for c in deprecated_cases()}  # 12 per-cell names and the 4 older ones
    assert len(old) == 16


def test_import_without_flax_works_until_the_flax_module_is_used():
    # sys.modules["flax"] = None makes every `import flax...` raise ImportError, as on a
    # machine where Flax is not installed.
    script = """
import sys
sys.modules["flax"] = None
import numpy as np
import seqnets, seqnets.interop as interop
assert "flax.linen" not in sys.modules
params = interop.from_flax({"i": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)},
                            "h": {"kernel": np.eye(3)}}, "elman")
assert params["w_x"].shape == (2, 3)
try:
    interop.RNN
except ImportError as error:
    print(error)
else:
    raise SystemExit("interop.RNN imported without Flax")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'seqnets[flax]'" in result.stdout
