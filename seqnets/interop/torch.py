"""PyTorch interop without importing torch: read and write ``state_dict`` mappings.

PyTorch's ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` name their weights ``weight_ih_l{k}``,
``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (suffix ``_reverse`` for the
backward direction), with matrices stored ``(gates * hidden, inputs)``; seqnets stores
the transpose. PyTorch adds two biases where seqnets keeps one, so the conversion sums
them (exact to float32 rounding of that one addition). The results are `stack` params:
a list with one ``{"forward": ..., "backward": ...}`` dict per layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqnets.types import Array

_KEY = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _layout(state_dict: Mapping[str, Any], kind: str) -> tuple[int, bool]:
    """Returns (num_layers, bidirectional) after checking every key is understood."""
    layers, reverse = set(), False
    for key in state_dict:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(
                f"from_torch_{kind}: unexpected key {key!r}; expected names like "
                "'weight_ih_l0', 'bias_hh_l1_reverse' (proj_size is not supported)."
            )
        layers.add(int(match.group(3)))
        reverse = reverse or match.group(4) is not None
    if not layers:
        raise ValueError(f"from_torch_{kind}: the state_dict is empty.")
    if layers != set(range(len(layers))):
        raise ValueError(f"from_torch_{kind}: layer indices {sorted(layers)} are not 0..N-1.")
    return len(layers), reverse


def _read(state_dict: Mapping[str, Any], kind: str, gates: int):
    num_layers, bidirectional = _layout(state_dict, kind)
    directions = ("forward", "backward") if bidirectional else ("forward",)
    for layer in range(num_layers):
        entry = {}
        for direction in directions:
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
            names = {n: f"{n}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            for n in ("weight_ih", "weight_hh"):
                if names[n] not in state_dict:
                    raise ValueError(f"from_torch_{kind}: missing key {names[n]!r}.")
            w_ih = _to_numpy(state_dict[names["weight_ih"]])
            w_hh = _to_numpy(state_dict[names["weight_hh"]])
            hidden = w_hh.shape[1]
            if w_hh.shape != (gates * hidden, hidden) or w_ih.ndim != 2 or (
                w_ih.shape[0] != gates * hidden
            ):
                raise ValueError(
                    f"from_torch_{kind}: {names['weight_hh']} must be ({gates}*H, H) and "
                    f"{names['weight_ih']} ({gates}*H, input_size); got {w_hh.shape} and "
                    f"{w_ih.shape}."
                )
            zeros = np.zeros((gates * hidden,), np.float32)
            b_ih = _to_numpy(state_dict.get(names["bias_ih"], zeros))
            b_hh = _to_numpy(state_dict.get(names["bias_hh"], zeros))
            for n, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
                if b.shape != (gates * hidden,):
                    raise ValueError(
                        f"from_torch_{kind}: {names[n]} must be ({gates * hidden},); got {b.shape}."
                    )
            entry[direction] = (w_ih, w_hh, b_ih, b_hh)
        yield entry


def _write(params: list[dict[str, Any]], to_arrays) -> dict[str, np.ndarray]:
    out = {}
    for layer, entry in enumerate(params):
        for direction, p in entry.items():
            suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
            w_ih, w_hh, b_ih, b_hh = to_arrays({k: np.asarray(v) for k, v in p.items()})
            out[f"weight_ih{suffix}"] = w_ih
            out[f"weight_hh{suffix}"] = w_hh
            out[f"bias_ih{suffix}"] = b_ih
            out[f"bias_hh{suffix}"] = b_hh
    return out


def _simple(w_ih, w_hh, b_ih, b_hh) -> dict[str, Array]:
    return {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T), "b": jnp.asarray(b_ih + b_hh)}


def from_torch_lstm(state_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``nn.LSTM.state_dict()`` (or any mapping of arrays with its names) -> `stack` params.

    Use with ``seqnets.stack(seqnets.lstm(H), num_layers=L, bidirectional=...)``.
    """
    return [{d: _simple(*arrays) for d, arrays in entry.items()}
            for entry in _read(state_dict, "lstm", 4)]


def from_torch_rnn(state_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``nn.RNN.state_dict()`` -> `stack` params of `elman` cells (pick the same activation)."""
    return [{d: _simple(*arrays) for d, arrays in entry.items()}
            for entry in _read(state_dict, "rnn", 1)]


def from_torch_gru(state_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``nn.GRU.state_dict()`` -> `stack` params of `gru` cells."""

    def convert(w_ih, w_hh, b_ih, b_hh):
        hidden = w_hh.shape[1]
        b = b_ih.copy()
        b[: 2 * hidden] += b_hh[: 2 * hidden]  # the r and z recurrent biases fold in
        return {
            "w_x": jnp.asarray(w_ih.T),
            "w_h": jnp.asarray(w_hh.T),
            "b": jnp.asarray(b),
            "b_hn": jnp.asarray(b_hh[2 * hidden :]),
        }

    return [{d: convert(*arrays) for d, arrays in entry.items()}
            for entry in _read(state_dict, "gru", 3)]


def _simple_to_torch(p):
    return p["w_x"].T, p["w_h"].T, p["b"], np.zeros_like(p["b"])


def to_torch_lstm(params: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """`stack` params of `lstm` cells -> a ``state_dict`` of NumPy arrays for ``nn.LSTM``.

    Load it with ``lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    return _write(params, _simple_to_torch)


def to_torch_rnn(params: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """`stack` params of `elman` cells -> a ``state_dict`` of NumPy arrays for ``nn.RNN``."""
    return _write(params, _simple_to_torch)


def to_torch_gru(params: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """`stack` params of `gru` cells -> a ``state_dict`` of NumPy arrays for ``nn.GRU``."""

    def convert(p):
        zeros = np.zeros_like(p["b_hn"])
        return p["w_x"].T, p["w_h"].T, p["b"], np.concatenate([zeros, zeros, p["b_hn"]])

    return _write(params, convert)
