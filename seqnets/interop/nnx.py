"""Flax NNX interop: parameter conversion for NNX's cells (no Flax import needed).

`from_nnx` reads an NNX cell's parameters into one seqnets cell's, and `to_nnx` writes
them back; both name the seqnets cell (a `Cell` such as ``seqnets.lstm(16)``, or its
name) and look its converter up in `seqnets.interop.registry` under ``"nnx"``:

| seqnets cell | Flax NNX cell | NNX parameters |
|---|---|---|
| `lstm` | ``nnx.LSTMCell`` | ``ii, if_, ig, io`` (kernels), ``hi, hf, hg, ho`` (kernels, biases) |
| `lstm` | ``nnx.OptimizedLSTMCell`` | ``dense_i`` (kernel ``(F, 4H)``), ``dense_h`` (kernel, bias) |
| `gru` | ``nnx.GRUCell`` | ``dense_i`` (kernel ``(F, 3H)``, bias), ``dense_h`` (kernel) |
| `elman` | ``nnx.SimpleCell`` (no ``residual``) | ``dense_i`` (kernel, bias), ``dense_h`` (kernel) |

`from_nnx` takes what ``nnx.state(cell, nnx.Param)`` returns (a ``State`` of
``nnx.Param``) or the plain nested dict of arrays that ``nnx.to_pure_dict`` makes of it,
and tells the two LSTM layouts apart by their keys. `to_nnx` returns the plain nested
dict; load it with ``nnx.replace_by_pure_dict(state, result)`` and
``nnx.update(nnx_cell, state)``. ``fused=True`` writes ``OptimizedLSTMCell``'s layout.

The gate order is seqnets' own (i, f, g, o; r, z, n), so the conversions are exact
(concatenation and slicing). NNX's ``GRUCell`` has no bias inside ``r * (h W_hn)``: it
reads as seqnets' ``b_hn = 0``, and a seqnets GRU whose ``b_hn`` is not zero has no NNX
form (`to_nnx` says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqnets.cells.base import Cell
from seqnets.interop.registry import (
    Converter,
    check_cell_params,
    check_flax_model,
    converter,
    lookup,
    register,
)
from seqnets.types import Array

_LSTM_GATES = ("i", "f", "g", "o")
# NNX's LSTMCell names its input Dense of the forget gate `if_` (`if` is a keyword).
_NNX_INPUT = {"i": "ii", "f": "if_", "g": "ig", "o": "io"}


def _plain(node: Any) -> Any:
    """An NNX ``State`` (or a dict) as nested dicts of arrays: ``nnx.Param`` leaves unwrapped."""
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if hasattr(node, "get_value"):  # an nnx.Variable
        return node.get_value()
    return getattr(node, "value", node)


def _get(tree: Mapping, *path: str) -> Array:
    return jnp.asarray(lookup(tree, path, "NNX", "Pass nnx.state(cell, nnx.Param) of the "
                              "matching flax.nnx cell (or its nnx.to_pure_dict)."))


def _lstm_from_nnx(state: Any) -> dict[str, Array]:
    """``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` parameters -> seqnets `lstm` params."""
    p = _plain(state)
    if "dense_i" in p:
        return {"w_x": _get(p, "dense_i", "kernel"), "w_h": _get(p, "dense_h", "kernel"),
                "b": _get(p, "dense_h", "bias")}
    return {
        "w_x": jnp.concatenate([_get(p, _NNX_INPUT[g], "kernel") for g in _LSTM_GATES], axis=-1),
        "w_h": jnp.concatenate([_get(p, f"h{g}", "kernel") for g in _LSTM_GATES], axis=-1),
        "b": jnp.concatenate([_get(p, f"h{g}", "bias") for g in _LSTM_GATES], axis=-1),
    }


def _lstm_to_nnx(params: dict[str, Array], *, fused: bool = False) -> dict[str, Any]:
    """seqnets `lstm` params -> ``nnx.LSTMCell``'s (or, ``fused``, OptimizedLSTMCell's) dict."""
    if fused:
        return {"dense_i": {"kernel": params["w_x"]},
                "dense_h": {"kernel": params["w_h"], "bias": params["b"]}}
    w_x, w_h, b = (jnp.split(params[k], 4, axis=-1) for k in ("w_x", "w_h", "b"))
    out: dict[str, Any] = {}
    for k, g in enumerate(_LSTM_GATES):
        out[_NNX_INPUT[g]] = {"kernel": w_x[k]}
        out[f"h{g}"] = {"kernel": w_h[k], "bias": b[k]}  # NNX's recurrent Linear holds the bias
    return out


def _gru_from_nnx(state: Any) -> dict[str, Array]:
    """``nnx.GRUCell`` parameters -> seqnets `gru` params (``b_hn`` zero: NNX has none)."""
    p = _plain(state)
    w_h = _get(p, "dense_h", "kernel")
    return {"w_x": _get(p, "dense_i", "kernel"), "w_h": w_h, "b": _get(p, "dense_i", "bias"),
            "b_hn": jnp.zeros((w_h.shape[0],), w_h.dtype)}


def _gru_to_nnx(params: dict[str, Array], *, fused: bool = False) -> dict[str, Any]:
    """seqnets `gru` params -> ``nnx.GRUCell``'s dict; ValueError unless ``b_hn`` is zero."""
    del fused  # GRUCell has one layout
    b_hn = np.asarray(params["b_hn"])
    if np.any(b_hn != 0):
        raise ValueError(
            "to_nnx: this GRU's b_hn (the bias inside r * (h W_hn + b_hn)) is not zero, and "
            "nnx.GRUCell has no such bias, so no NNX GRUCell computes the same function. "
            "PyTorch's GRU and flax.linen.GRUCell have it: convert with to_torch or to_flax."
        )
    return {"dense_i": {"kernel": params["w_x"], "bias": params["b"]},
            "dense_h": {"kernel": params["w_h"]}}


def _elman_from_nnx(state: Any) -> dict[str, Array]:
    """``nnx.SimpleCell`` (without ``residual``) parameters -> seqnets `elman` params."""
    p = _plain(state)
    return {"w_x": _get(p, "dense_i", "kernel"), "w_h": _get(p, "dense_h", "kernel"),
            "b": _get(p, "dense_i", "bias")}


def _elman_to_nnx(params: dict[str, Array], *, fused: bool = False) -> dict[str, Any]:
    """seqnets `elman` params -> ``nnx.SimpleCell``'s dict."""
    del fused  # SimpleCell has one layout
    return {"dense_i": {"kernel": params["w_x"], "bias": params["b"]},
            "dense_h": {"kernel": params["w_h"]}}


register("nnx", "lstm", Converter(_lstm_from_nnx, _lstm_to_nnx,
                                  "flax.nnx.LSTMCell, OptimizedLSTMCell"))
register("nnx", "gru", Converter(_gru_from_nnx, _gru_to_nnx, "flax.nnx.GRUCell"))
register("nnx", "elman", Converter(_elman_from_nnx, _elman_to_nnx, "flax.nnx.SimpleCell"))


def from_nnx(nnx_params: Any, cell: Cell | str) -> dict[str, Array]:
    """A Flax NNX cell's parameters -> one seqnets cell's parameters.

    Args:
      nnx_params: ``nnx.state(nnx_cell, nnx.Param)``, or ``nnx.to_pure_dict`` of it.
      cell: the seqnets cell they are for: a `Cell` (``seqnets.lstm(16)``), whose
        ``init`` the result is then checked against, or its name (``"lstm"``).

    Returns:
      The cell's params, e.g. for `lstm` ``{"w_x": (F, 4H), "w_h": (H, 4H), "b": (4H,)}``.

    Raises:
      ValueError: no NNX converter for the cell, a parameter missing, or the result not
        fitting ``cell``.
    """
    where = "from_nnx"
    conv = converter("nnx", check_flax_model(cell, "nnx", where), where)
    params = conv.read(nnx_params)
    if isinstance(cell, Cell):
        check_cell_params(params, cell, conv, where)
    return params


def to_nnx(params: dict[str, Array], cell: Cell | str, *, fused: bool = False) -> dict[str, Any]:
    """One seqnets cell's parameters -> the NNX cell's parameters as a plain nested dict.

    Args:
      params: the cell's params, as ``cell.init`` makes them.
      cell: a `Cell` (the params are checked against its ``init`` first) or its name.
      fused: for `lstm`, ``nnx.OptimizedLSTMCell``'s layout instead of ``nnx.LSTMCell``'s
        (the other cells have one layout).

    Returns:
      ``{"dense_i": {"kernel": ...}, ...}``: load it with
      ``nnx.replace_by_pure_dict(state, result)`` then ``nnx.update(nnx_cell, state)``,
      where ``state = nnx.state(nnx_cell, nnx.Param)``.
    """
    where = "to_nnx"
    conv = converter("nnx", check_flax_model(cell, "nnx", where), where)
    if isinstance(cell, Cell):
        check_cell_params(params, cell, conv, where)
    return conv.write(params, fused=fused)
