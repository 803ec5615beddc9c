"""PyTorch interop without importing torch: read and write ``state_dict`` mappings.

Names follow seqnets' cells, as in `seqnets.interop.flax`, and every converter takes one
cell's parameters and returns one cell's parameters; for PyTorch's multi-layer modules
the same functions take and return the list form that `seqnets.stack` uses:

| seqnets | PyTorch cell (one step) | PyTorch layers | PyTorch -> seqnets | seqnets -> PyTorch |
|---|---|---|---|---|
| `lstm` | ``nn.LSTMCell`` | ``nn.LSTM`` | `from_torch_lstm` | `to_torch_lstm` |
| `gru` | ``nn.GRUCell`` | ``nn.GRU`` | `from_torch_gru` | `to_torch_gru` |
| `elman` | ``nn.RNNCell`` | ``nn.RNN`` | `from_torch_elman` | `to_torch_elman` |

The keys decide the form, so the result computes the same function as its input:
- a cell's ``state_dict`` (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) <->
  one seqnets cell's params, a dict such as ``{"w_x", "w_h", "b"}``;
- a layers module's ``state_dict`` (``weight_ih_l{k}``, ... with suffix ``_reverse`` for
  the backward direction) <-> `stack` params: a list with one
  ``{"forward": ..., "backward": ...}`` dict per layer, for
  ``seqnets.stack(cell, num_layers=L, bidirectional=...)``.

PyTorch stores matrices ``(gates * hidden, inputs)``; seqnets stores the transpose.
PyTorch adds two biases where seqnets keeps one, so reading sums them (exact to float32
rounding of that one addition); writing puts seqnets' bias in ``bias_ih`` and zeros in
``bias_hh``, except GRU's ``n`` gate, whose recurrent bias seqnets keeps as ``b_hn``.

``from_torch_rnn`` and ``to_torch_rnn`` are deprecated aliases of the ``elman`` names,
removed in the next release.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqnets.interop._deprecated import deprecated_alias
from seqnets.types import Array

_KEY = re.compile(r"^(weight|bias)_(ih|hh)(?:_l(\d+)(_reverse)?)?$")
_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

CellParams = dict[str, Array]
StackParams = list[dict[str, Any]]
TorchArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _layout(state_dict: Mapping[str, Any], kind: str) -> tuple[int, bool] | None:
    """Returns None for a cell's state_dict, else (num_layers, bidirectional); checks every key."""
    layers, reverse, cell_keys = set(), False, False
    for key in state_dict:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(
                f"from_torch_{kind}: unexpected key {key!r}; expected a cell's names "
                "('weight_ih', 'bias_hh', ...) or a layers module's names like 'weight_ih_l0', "
                "'bias_hh_l1_reverse' (proj_size is not supported)."
            )
        if match.group(3) is None:
            cell_keys = True
        else:
            layers.add(int(match.group(3)))
            reverse = reverse or match.group(4) is not None
    if cell_keys and layers:
        raise ValueError(
            f"from_torch_{kind}: the state_dict mixes a cell's keys ('weight_ih', ...) with a "
            f"layers module's keys ('weight_ih_l0', ...); got {sorted(state_dict)}."
        )
    if cell_keys:
        return None
    if not layers:
        raise ValueError(f"from_torch_{kind}: the state_dict is empty.")
    if layers != set(range(len(layers))):
        raise ValueError(f"from_torch_{kind}: layer indices {sorted(layers)} are not 0..N-1.")
    return len(layers), reverse


def _suffix(layer: int, direction: str) -> str:
    return f"_l{layer}" + ("_reverse" if direction == "backward" else "")


def _read_one(state_dict: Mapping[str, Any], suffix: str, kind: str, gates: int) -> TorchArrays:
    names = {n: f"{n}{suffix}" for n in _NAMES}
    for n in ("weight_ih", "weight_hh"):
        if names[n] not in state_dict:
            raise ValueError(f"from_torch_{kind}: missing key {names[n]!r}.")
    w_ih = _to_numpy(state_dict[names["weight_ih"]])
    w_hh = _to_numpy(state_dict[names["weight_hh"]])
    hidden = w_hh.shape[1] if w_hh.ndim == 2 else -1
    if w_hh.shape != (gates * hidden, hidden) or w_ih.ndim != 2 or w_ih.shape[0] != gates * hidden:
        raise ValueError(
            f"from_torch_{kind}: {names['weight_hh']} must be ({gates}*H, H) and "
            f"{names['weight_ih']} ({gates}*H, input_size); got {w_hh.shape} and {w_ih.shape}."
        )
    zeros = np.zeros((gates * hidden,), np.float32)
    b_ih = _to_numpy(state_dict.get(names["bias_ih"], zeros))
    b_hh = _to_numpy(state_dict.get(names["bias_hh"], zeros))
    for n, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b.shape != (gates * hidden,):
            raise ValueError(
                f"from_torch_{kind}: {names[n]} must be ({gates * hidden},); got {b.shape}."
            )
    return w_ih, w_hh, b_ih, b_hh


def _read(
    state_dict: Mapping[str, Any], kind: str, gates: int, convert: Callable[..., CellParams]
) -> CellParams | StackParams:
    layout = _layout(state_dict, kind)
    if layout is None:
        return convert(*_read_one(state_dict, "", kind, gates))
    num_layers, bidirectional = layout
    directions = ("forward", "backward") if bidirectional else ("forward",)
    return [
        {d: convert(*_read_one(state_dict, _suffix(layer, d), kind, gates)) for d in directions}
        for layer in range(num_layers)
    ]


def _write(
    params: CellParams | StackParams, kind: str, convert: Callable[[dict[str, np.ndarray]], TorchArrays]
) -> dict[str, np.ndarray]:
    def arrays(p: Mapping[str, Any], suffix: str) -> dict[str, np.ndarray]:
        if not isinstance(p, Mapping) or "w_x" not in p:
            got = f"keys {sorted(p)}" if isinstance(p, Mapping) else type(p).__name__
            raise ValueError(
                f"to_torch_{kind}: expected one `{kind}` cell's params (a dict with 'w_x', "
                f"'w_h', 'b') or a list of {{'forward': ...}} dicts (`stack` params); got {got}."
            )
        values = convert({k: np.asarray(v, np.float32) for k, v in p.items()})
        return {f"{n}{suffix}": v for n, v in zip(_NAMES, values, strict=True)}

    if isinstance(params, Mapping):
        return arrays(params, "")
    if not isinstance(params, Sequence) or not params:
        raise ValueError(
            f"to_torch_{kind}: expected one cell's params (a dict) or `stack` params (a non-empty "
            f"list with one {{'forward': ..., 'backward': ...}} dict per layer); got {params!r:.80}."
        )
    out: dict[str, np.ndarray] = {}
    for layer, entry in enumerate(params):
        for direction, p in entry.items():
            out.update(arrays(p, _suffix(layer, direction)))
    return out


def _simple(w_ih, w_hh, b_ih, b_hh) -> CellParams:
    return {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T), "b": jnp.asarray(b_ih + b_hh)}


def _gru(w_ih, w_hh, b_ih, b_hh) -> CellParams:
    hidden = w_hh.shape[1]
    b = b_ih.copy()
    b[: 2 * hidden] += b_hh[: 2 * hidden]  # the r and z recurrent biases fold in
    return {
        "w_x": jnp.asarray(w_ih.T),
        "w_h": jnp.asarray(w_hh.T),
        "b": jnp.asarray(b),
        "b_hn": jnp.asarray(b_hh[2 * hidden :]),
    }


def from_torch_lstm(state_dict: Mapping[str, Any]) -> CellParams | StackParams:
    """``nn.LSTMCell`` or ``nn.LSTM`` ``state_dict`` (tensors or arrays) -> seqnets `lstm` params.

    Returns one cell's params ``{"w_x": (F, 4H), "w_h": (H, 4H), "b": (4H,)}`` for an
    ``nn.LSTMCell``, or, for an ``nn.LSTM``, `stack` params (a list per layer of
    ``{"forward": ..., "backward": ...}``) for
    ``seqnets.stack(seqnets.lstm(H), num_layers=L, bidirectional=...)``.
    """
    return _read(state_dict, "lstm", 4, _simple)


def from_torch_gru(state_dict: Mapping[str, Any]) -> CellParams | StackParams:
    """``nn.GRUCell`` or ``nn.GRU`` ``state_dict`` -> seqnets `gru` params (a cell's or `stack`'s).

    A cell's params are ``{"w_x": (F, 3H), "w_h": (H, 3H), "b": (3H,), "b_hn": (H,)}``.
    """
    return _read(state_dict, "gru", 3, _gru)


def from_torch_elman(state_dict: Mapping[str, Any]) -> CellParams | StackParams:
    """``nn.RNNCell`` or ``nn.RNN`` ``state_dict`` -> seqnets `elman` params (a cell's or `stack`'s).

    A cell's params are ``{"w_x": (F, H), "w_h": (H, H), "b": (H,)}``. PyTorch's default
    nonlinearity is tanh, as `elman`'s is; pick the same one on both sides.
    """
    return _read(state_dict, "elman", 1, _simple)


def _simple_to_torch(p: dict[str, np.ndarray]) -> TorchArrays:
    return p["w_x"].T, p["w_h"].T, p["b"], np.zeros_like(p["b"])


def _gru_to_torch(p: dict[str, np.ndarray]) -> TorchArrays:
    zeros = np.zeros_like(p["b_hn"])
    return p["w_x"].T, p["w_h"].T, p["b"], np.concatenate([zeros, zeros, p["b_hn"]])


def to_torch_lstm(params: CellParams | StackParams) -> dict[str, np.ndarray]:
    """seqnets `lstm` params -> a ``state_dict`` of NumPy arrays.

    One cell's params give ``nn.LSTMCell``'s keys; `stack` params give ``nn.LSTM``'s. Load
    it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    return _write(params, "lstm", _simple_to_torch)


def to_torch_gru(params: CellParams | StackParams) -> dict[str, np.ndarray]:
    """seqnets `gru` params (a cell's or `stack`'s) -> ``nn.GRUCell`` / ``nn.GRU`` ``state_dict``."""
    return _write(params, "gru", _gru_to_torch)


def to_torch_elman(params: CellParams | StackParams) -> dict[str, np.ndarray]:
    """seqnets `elman` params (a cell's or `stack`'s) -> ``nn.RNNCell`` / ``nn.RNN`` ``state_dict``."""
    return _write(params, "elman", _simple_to_torch)


from_torch_rnn = deprecated_alias("from_torch_rnn", from_torch_elman)
to_torch_rnn = deprecated_alias("to_torch_rnn", to_torch_elman)
