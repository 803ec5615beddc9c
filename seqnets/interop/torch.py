"""PyTorch interop without importing torch: read and write ``state_dict`` mappings.

`from_torch` reads a ``state_dict`` (tensors or arrays with PyTorch's names) into seqnets
parameters and `to_torch` writes seqnets parameters back as NumPy arrays. Both name the
seqnets model: a `Cell` (``seqnets.lstm(16)``), a `Stack`, or a cell name (``"lstm"``),
and look its converter up in `seqnets.interop.registry`:

| seqnets | PyTorch cell (one step) | PyTorch layers |
|---|---|---|
| `lstm` | ``nn.LSTMCell`` | ``nn.LSTM`` |
| `gru` | ``nn.GRUCell`` | ``nn.GRU`` |
| `elman` | ``nn.RNNCell`` | ``nn.RNN`` |

The keys decide the form, so the result computes the same function as its input:
- a cell's ``state_dict`` (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) <->
  one seqnets cell's params, a dict such as ``{"w_x", "w_h", "b"}``;
- a layers module's ``state_dict`` (``weight_ih_l{k}``, ... with suffix ``_reverse`` for
  the backward direction) <-> `stack` params: a list with one
  ``{"forward": ..., "backward": ...}`` dict per layer, for
  ``seqnets.stack(cell, num_layers=L, bidirectional=...)``.

Given a `Stack`, the result is that stack's parameters: its layer count and direction
must match the ``state_dict``'s (a cell's ``state_dict`` fits a one-layer stack).

PyTorch stores matrices ``(gates * hidden, inputs)``; seqnets stores the transpose.
PyTorch adds two biases where seqnets keeps one, so reading sums them (exact to float32
rounding of that one addition); writing puts seqnets' bias in ``bias_ih`` and zeros in
``bias_hh``, except GRU's ``n`` gate, whose recurrent bias seqnets keeps as ``b_hn``.

The per-cell names of version 0.1.0 (``from_torch_lstm``, ``to_torch_gru``, ... and the
older ``from_torch_rnn``/``to_torch_rnn``) are deprecated aliases of these two, removed
in seqnets 0.2.0.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqnets.cells.base import Cell
from seqnets.interop._deprecated import deprecated_pairs
from seqnets.interop.registry import Converter, cell_name, check_cell_params, converter, register
from seqnets.sequence.stack import Stack
from seqnets.types import Array

_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)(?:_l(\d+)(_reverse)?)?$")
_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")

CellParams = dict[str, Array]
StackParams = list[dict[str, Any]]
# weight_ih, weight_hh, bias_ih, bias_hh, weight_hr; None for a bias or projection that
# the module does not have (bias=False, no proj_size).
TorchArrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None,
                    np.ndarray | None]


def _reading(kind: str) -> str:
    return f"from_torch(state_dict, {kind!r})"


def _writing(kind: str) -> str:
    return f"to_torch(params, {kind!r})"


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
                f"{_reading(kind)}: unexpected key {key!r}; expected a cell's names "
                "('weight_ih', 'bias_hh', ...) or a layers module's names like 'weight_ih_l0', "
                "'bias_hh_l1_reverse', 'weight_hr_l0' (an LSTM's proj_size)."
            )
        if match.group(2) == "hr" and kind != "lstm":
            raise ValueError(f"{_reading(kind)}: {key!r} is an LSTM's projection (proj_size); a "
                             f"{kind} has none.")
        if match.group(3) is None:
            cell_keys = True
        else:
            layers.add(int(match.group(3)))
            reverse = reverse or match.group(4) is not None
    if cell_keys and layers:
        raise ValueError(
            f"{_reading(kind)}: the state_dict mixes a cell's keys ('weight_ih', ...) with a "
            f"layers module's keys ('weight_ih_l0', ...); got {sorted(state_dict)}."
        )
    if cell_keys:
        return None
    if not layers:
        raise ValueError(f"{_reading(kind)}: the state_dict is empty.")
    if layers != set(range(len(layers))):
        raise ValueError(f"{_reading(kind)}: layer indices {sorted(layers)} are not 0..N-1.")
    return len(layers), reverse


def _suffix(layer: int, direction: str) -> str:
    return f"_l{layer}" + ("_reverse" if direction == "backward" else "")


def _read_one(state_dict: Mapping[str, Any], suffix: str, kind: str, gates: int) -> TorchArrays:
    names = {n: f"{n}{suffix}" for n in _NAMES}
    for n in ("weight_ih", "weight_hh"):
        if names[n] not in state_dict:
            raise ValueError(f"{_reading(kind)}: missing key {names[n]!r}.")
    w_ih = _to_numpy(state_dict[names["weight_ih"]])
    w_hh = _to_numpy(state_dict[names["weight_hh"]])
    w_hr = (_to_numpy(state_dict[names["weight_hr"]]) if names["weight_hr"] in state_dict
            else None)
    hidden = w_hh.shape[0] // gates if w_hh.ndim == 2 else -1
    # With a projection (LSTMP), the recurrent input is the projection's P wide output.
    rows = hidden if w_hr is None else (w_hr.shape[0] if w_hr.ndim == 2 else -1)
    if w_hh.shape != (gates * hidden, rows) or w_ih.ndim != 2 or w_ih.shape[0] != gates * hidden:
        what = "H" if w_hr is None else "P"
        raise ValueError(
            f"{_reading(kind)}: {names['weight_hh']} must be ({gates}*H, {what}) and "
            f"{names['weight_ih']} ({gates}*H, input_size); got {w_hh.shape} and {w_ih.shape}."
        )
    if w_hr is not None and w_hr.shape != (rows, hidden):
        raise ValueError(f"{_reading(kind)}: {names['weight_hr']} must be (P, H) with H = "
                         f"{hidden}; got {w_hr.shape}.")
    present = [names[n] in state_dict for n in ("bias_ih", "bias_hh")]
    if not any(present):  # bias=False
        return w_ih, w_hh, None, None, w_hr
    zeros = np.zeros((gates * hidden,), np.float32)
    b_ih = _to_numpy(state_dict.get(names["bias_ih"], zeros))
    b_hh = _to_numpy(state_dict.get(names["bias_hh"], zeros))
    for n, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b.shape != (gates * hidden,):
            raise ValueError(
                f"{_reading(kind)}: {names[n]} must be ({gates * hidden},); got {b.shape}."
            )
    return w_ih, w_hh, b_ih, b_hh, w_hr


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
                f"{_writing(kind)}: expected one `{kind}` cell's params (a dict with 'w_x', "
                f"'w_h', 'b') or a list of {{'forward': ...}} dicts (`stack` params); got {got}."
            )
        values = convert({k: np.asarray(v, np.float32) for k, v in p.items()})
        return {f"{n}{suffix}": v for n, v in zip(_NAMES, values, strict=True) if v is not None}

    if isinstance(params, Mapping):
        return arrays(params, "")
    if not isinstance(params, Sequence) or not params:
        raise ValueError(
            f"{_writing(kind)}: expected one cell's params (a dict) or `stack` params (a non-empty "
            f"list with one {{'forward': ..., 'backward': ...}} dict per layer); got {params!r:.80}."
        )
    out: dict[str, np.ndarray] = {}
    for layer, entry in enumerate(params):
        for direction, p in entry.items():
            out.update(arrays(p, _suffix(layer, direction)))
    return out


def _simple(w_ih, w_hh, b_ih, b_hh, w_hr) -> CellParams:
    params = {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T)}
    if b_ih is not None:
        params["b"] = jnp.asarray(b_ih + b_hh)
    if w_hr is not None:
        params["w_hr"] = jnp.asarray(w_hr.T)
    return params


def _gru(w_ih, w_hh, b_ih, b_hh, w_hr) -> CellParams:
    params = {"w_x": jnp.asarray(w_ih.T), "w_h": jnp.asarray(w_hh.T)}
    if b_ih is not None:
        hidden = w_hh.shape[1]
        b = b_ih.copy()
        b[: 2 * hidden] += b_hh[: 2 * hidden]  # the r and z recurrent biases fold in
        params["b"], params["b_hn"] = jnp.asarray(b), jnp.asarray(b_hh[2 * hidden :])
    return params


def _simple_to_torch(p: dict[str, np.ndarray]) -> TorchArrays:
    b = p.get("b")
    w_hr = p["w_hr"].T if "w_hr" in p else None
    return p["w_x"].T, p["w_h"].T, b, None if b is None else np.zeros_like(b), w_hr


def _gru_to_torch(p: dict[str, np.ndarray]) -> TorchArrays:
    if "b" not in p:
        return p["w_x"].T, p["w_h"].T, None, None, None
    zeros = np.zeros_like(p["b_hn"])
    return p["w_x"].T, p["w_h"].T, p["b"], np.concatenate([zeros, zeros, p["b_hn"]]), None


register("torch", "lstm", Converter(functools.partial(_read, kind="lstm", gates=4, convert=_simple),
                                    functools.partial(_write, kind="lstm", convert=_simple_to_torch),
                                    "torch.nn.LSTMCell, torch.nn.LSTM"))
register("torch", "gru", Converter(functools.partial(_read, kind="gru", gates=3, convert=_gru),
                                   functools.partial(_write, kind="gru", convert=_gru_to_torch),
                                   "torch.nn.GRUCell, torch.nn.GRU"))
register("torch", "elman", Converter(functools.partial(_read, kind="elman", gates=1, convert=_simple),
                                     functools.partial(_write, kind="elman", convert=_simple_to_torch),
                                     "torch.nn.RNNCell, torch.nn.RNN"))


def _check(params: Any, model: Cell | Stack | str, conv: Converter, where: str) -> None:
    """Checks ``params`` (a cell's, or `stack` params) against ``model``'s ``init``s.

    A form that is neither is left to `_write`, whose message names the expected forms.
    """
    if isinstance(model, str):
        return
    if isinstance(params, Mapping):
        if isinstance(model, Stack):
            raise ValueError(f"{where}: a stack's params are a list with one dict per layer; got "
                             "one cell's params (a dict). Pass the cell instead of the stack.")
        check_cell_params(params, model, conv, where)
        return
    if not isinstance(params, Sequence) or not all(isinstance(e, Mapping) for e in params):
        return
    if isinstance(model, Stack):
        cells = model.cells
        directions = ["backward", "forward"] if model.bidirectional else ["forward"]
        if len(params) != len(cells) or any(sorted(entry) != directions for entry in params):
            raise ValueError(
                f"{where}: the stack has {len(cells)} layers with directions {directions}; "
                f"the params have {len(params)} layers with {[sorted(e) for e in params]}."
            )
    else:
        cells = (model,) * len(params)
    for layer, (entry, cell) in enumerate(zip(params, cells, strict=True)):
        for direction, p in entry.items():
            check_cell_params(p, cell, conv, f"{where}, layer {layer} {direction}")


def from_torch(state_dict: Mapping[str, Any], model: Cell | Stack | str) -> CellParams | StackParams:
    """A PyTorch ``state_dict`` (tensors or arrays) -> seqnets parameters.

    Args:
      state_dict: a cell's (``nn.LSTMCell``: ``weight_ih``, ...) or a layers module's
        (``nn.LSTM``: ``weight_ih_l0``, ..., ``_reverse``).
      model: what the parameters are for: a `Cell` (``seqnets.lstm(16)``), a `Stack`
        (``seqnets.stack(seqnets.lstm(16), num_layers=2)``), or a cell name
        (``"lstm"``). A `Cell` or `Stack` also checks the result against its ``init``.

    Returns:
      One cell's params for a cell's ``state_dict`` (``{"w_x": (F, 4H), "w_h": (H, 4H),
      "b": (4H,)}`` for `lstm`), or `stack` params for a layers module's, a list with one
      ``{"forward": ..., "backward": ...}`` dict per layer. Given a `Stack`, always that
      stack's params: a cell's ``state_dict`` then fills a one-layer stack.

    Raises:
      ValueError: no PyTorch converter for the cell, unexpected or missing keys, wrong
        shapes, or a result that does not fit ``model`` (another layer count, direction
        or hidden size).
    """
    where = "from_torch"
    conv = converter("torch", cell_name(model, where), where)
    params = conv.read(state_dict)
    if isinstance(model, Stack) and isinstance(params, Mapping):
        params = [{"forward": params}]
    params = _zero_biases_where_expected(params, model)
    _check(params, model, conv, where)
    return params


def _zero_biases_where_expected(params: CellParams | StackParams,
                                model: Cell | Stack | str) -> CellParams | StackParams:
    """A ``bias=False`` module read for a cell that has biases: zero biases, as PyTorch's
    missing ones are. A cell built with ``use_bias=False`` keeps none."""
    cells = (model.cells if isinstance(model, Stack) else (model,)) if not isinstance(model, str) \
        else None

    def fill(p: dict[str, Any], cell: Cell | None) -> dict[str, Any]:
        if "b" in p or "w_x" not in p:
            return p
        inputs = int(p["w_x"].shape[0])
        if cell is not None and "b" not in jax.eval_shape(
                lambda: cell.init(jax.random.key(0), inputs)):
            return p
        width = p["w_h"].shape[1]
        zeros = {"b": jnp.zeros((width,), jnp.float32)}
        if (cell.name if cell is not None else model) == "gru":
            zeros["b_hn"] = jnp.zeros((width // 3,), jnp.float32)
        return {**p, **zeros}

    if isinstance(params, Mapping):
        return fill(dict(params), None if cells is None else cells[0])
    return [{d: fill(dict(p), None if cells is None else cells[min(layer, len(cells) - 1)])
             for d, p in entry.items()} for layer, entry in enumerate(params)]


def to_torch(params: CellParams | StackParams, model: Cell | Stack | str) -> dict[str, np.ndarray]:
    """seqnets parameters -> a PyTorch ``state_dict`` of NumPy arrays.

    Args:
      params: one cell's params (written with ``nn.LSTMCell``'s keys) or `stack` params
        (``nn.LSTM``'s keys, ``weight_ih_l0``, ...).
      model: a `Cell`, a `Stack` or a cell name, as for `from_torch`; a `Cell` or
        `Stack` checks ``params`` against its ``init`` first.

    Returns:
      ``{name: float32 array}``. Load it with
      ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    where = "to_torch"
    conv = converter("torch", cell_name(model, where), where)
    _check(params, model, conv, where)
    return conv.write(params)


# The names of 0.1.0, deprecated (each call warns with its replacement), removed in 0.2.0.
(from_torch_lstm, to_torch_lstm, from_torch_gru, to_torch_gru, from_torch_elman, to_torch_elman,
 from_torch_rnn, to_torch_rnn) = deprecated_pairs(
    from_torch, to_torch, {"lstm": "lstm", "gru": "gru", "elman": "elman", "rnn": "elman"})
