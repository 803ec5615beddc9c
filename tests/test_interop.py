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
    "LSTMCell": (nn.LSTMCell, sn.lstm, interop.from_flax_lstm, interop.to_flax_lstm),
    "OptimizedLSTMCell": (nn.OptimizedLSTMCell, sn.lstm, interop.from_flax_lstm,
                          interop.to_flax_lstm),
    "GRUCell": (nn.GRUCell, sn.gru, interop.from_flax_gru, interop.to_flax_gru),
    "SimpleCell": (nn.SimpleCell, sn.elman, interop.from_flax_elman, interop.to_flax_elman),
}


@pytest.mark.parametrize("name", sorted(FLAX))
def test_flax_cells_match_with_converted_weights(name):
    flax_cls, factory, from_flax, to_flax = FLAX[name]
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
    params = from_flax(variables)
    carry, ys = sn.scan(cell, params, xs)
    chex.assert_trees_all_close((carry, ys), (flax_carry, flax_ys), atol=1e-5, rtol=1e-5)
    # Exact round trip.
    chex.assert_trees_all_equal(to_flax(params), variables["params"])


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
    "lstm": (4, torch_lstm_layer, sn.lstm, interop.from_torch_lstm, interop.to_torch_lstm),
    "gru": (3, torch_gru_layer, sn.gru, interop.from_torch_gru, interop.to_torch_gru),
    "elman": (1, torch_rnn_layer, sn.elman, interop.from_torch_elman, interop.to_torch_elman),
}


@pytest.mark.parametrize("kind", sorted(TORCH))
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_torch_state_dicts_match_numpy_reference(kind, num_layers, bidirectional):
    gates, layer_fn, factory, from_torch, to_torch = TORCH[kind]
    sd = random_state_dict(gates, num_layers, bidirectional)
    x = np.random.default_rng(1).normal(size=(B, T, F)).astype(np.float32)
    expected = torch_network(layer_fn, sd, x.astype(np.float64), num_layers, bidirectional)

    model = sn.stack(factory(H), num_layers=num_layers, bidirectional=bidirectional)
    params = from_torch(sd)
    _, ys = model.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(ys, expected, atol=1e-5, rtol=1e-5)

    # Writing back gives a state_dict that computes the same function.
    back = to_torch(jax.tree.map(np.asarray, params))
    assert sorted(back) == sorted(sd)
    again = torch_network(layer_fn, back, x.astype(np.float64), num_layers, bidirectional)
    np.testing.assert_allclose(again, expected, atol=1e-5)


def test_torch_conversion_errors_name_the_problem():
    sd = random_state_dict(4, 1, False)
    with pytest.raises(ValueError, match="unexpected key 'weight_hr_l0'"):
        interop.from_torch_lstm({**sd, "weight_hr_l0": np.zeros((5, 5))})
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \(4\*H, H\)"):
        interop.from_torch_lstm({**sd, "weight_hh_l0": np.zeros((15, 5))})
    with pytest.raises(ValueError, match="missing key 'weight_ih_l0'"):
        interop.from_torch_lstm({k: v for k, v in sd.items() if k != "weight_ih_l0"})
    with pytest.raises(ValueError, match="empty"):
        interop.from_torch_lstm({})


def cell_state_dict(stack_state_dict):
    """nn.LSTMCell/GRUCell/RNNCell's keys: a one-layer module's without the ``_l0``."""
    return {k.removesuffix("_l0"): v for k, v in stack_state_dict.items()}


@pytest.mark.parametrize("kind", sorted(TORCH))
def test_torch_cell_state_dicts_give_one_cells_params(kind):
    gates, layer_fn, factory, from_torch, to_torch = TORCH[kind]
    layers_sd = random_state_dict(gates, 1, False, seed=2)
    sd = cell_state_dict(layers_sd)
    assert sorted(sd) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]
    x = np.random.default_rng(3).normal(size=(B, T, F)).astype(np.float32)
    expected = torch_network(layer_fn, layers_sd, x.astype(np.float64), 1, False)

    params = from_torch(sd)
    assert isinstance(params, dict)  # one cell's params, as the Flax converters give
    chex.assert_trees_all_equal(params, from_torch(layers_sd)[0]["forward"])
    _, ys = sn.scan(factory(H), params, jnp.asarray(x))
    np.testing.assert_allclose(ys, expected, atol=1e-5, rtol=1e-5)

    back = to_torch(params)
    assert sorted(back) == sorted(sd)
    again = torch_network(layer_fn, {f"{k}_l0": v for k, v in back.items()},
                          x.astype(np.float64), 1, False)
    np.testing.assert_allclose(again, expected, atol=1e-5)


def test_torch_conversion_rejects_mixed_forms_and_bad_params():
    sd = random_state_dict(4, 1, False)
    with pytest.raises(ValueError, match="mixes a cell's keys"):
        interop.from_torch_lstm({**sd, "weight_ih": sd["weight_ih_l0"]})
    with pytest.raises(ValueError, match=r"to_torch_gru: expected one `gru` cell's params"):
        interop.to_torch_gru([{"forward": {"kernel": np.zeros((2, 2))}}])
    with pytest.raises(ValueError, match="non-empty list"):
        interop.to_torch_lstm([])


def test_new_names_cover_every_cell_and_framework():
    for direction in ("from", "to"):
        for framework in ("flax", "torch"):
            for cell in ("lstm", "gru", "elman"):
                assert callable(getattr(interop, f"{direction}_{framework}_{cell}"))
    assert set(interop.__all__) >= {n for n in dir(interop) if n.startswith(("from_", "to_"))}


def flax_simple_variables():
    flax_cell = nn.SimpleCell(features=H)
    x = jax.random.normal(jax.random.key(1), (B, F))
    carry = flax_cell.initialize_carry(jax.random.key(0), (B, F))
    variables = flax_cell.init(jax.random.key(2), carry, x)
    return jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), variables)


def deprecated_cases():
    """(old name, new name, argument) for every renamed converter."""
    variables = flax_simple_variables()
    sd = random_state_dict(1, 2, True)
    return [
        ("from_flax_simple", "from_flax_elman", variables),
        ("to_flax_simple", "to_flax_elman", interop.from_flax_elman(variables)),
        ("from_torch_rnn", "from_torch_elman", sd),
        ("to_torch_rnn", "to_torch_elman", jax.tree.map(np.asarray, interop.from_torch_elman(sd))),
        ("from_torch_rnn", "from_torch_elman", cell_state_dict(random_state_dict(1, 1, False))),
    ]


@pytest.mark.parametrize("case", range(5))
def test_deprecated_aliases_warn_and_give_identical_results(case):
    old, new, argument = deprecated_cases()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name must not warn
        expected = getattr(interop, new)(argument)
    message = rf"{old} is deprecated.*use seqnets\.interop\.{new}"
    with pytest.warns(DeprecationWarning, match=message) as record:
        got = getattr(interop, old)(argument)
    assert len(record) == 1
    assert record[0].filename == __file__  # stacklevel points at the caller's line
    chex.assert_trees_all_equal(got, expected)
    assert getattr(interop, old).__name__ == old
    # The submodules carry the aliases too.
    module = interop.flax if "flax" in old else interop.torch
    assert getattr(module, old) is getattr(interop, old)


def test_import_without_flax_works_until_the_flax_module_is_used():
    # sys.modules["flax"] = None makes every `import flax...` raise ImportError, as on a
    # machine where Flax is not installed.
    script = """
import sys
sys.modules["flax"] = None
import numpy as np
import seqnets, seqnets.interop as interop
assert "flax.linen" not in sys.modules
params = interop.from_flax_elman({"i": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)},
                                  "h": {"kernel": np.eye(3)}})
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
