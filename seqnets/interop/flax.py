"""Flax linen interop: parameter conversion for Flax's cells (no Flax import needed).

`from_flax` reads a Flax cell's parameters into one seqnets cell's, and `to_flax` writes
them back; both name the seqnets cell (a `Cell` such as ``seqnets.lstm(16)``, or its
name) and look its converter up in `seqnets.interop.registry`:

| seqnets cell | Flax linen cell |
|---|---|
| `lstm` | ``LSTMCell``, ``OptimizedLSTMCell`` |
| `gru` | ``GRUCell`` |
| `elman` | ``SimpleCell`` (tanh, no ``residual``) |

`from_flax` accepts what ``cell.init`` returns (``{"params": {...}}``) or the inner dict;
`to_flax` returns the inner dict (the ``params`` collection). Flax has no layer stack of
its own: convert each layer's cell and put the results in a list, which is what
`seqnets.stack` params are (``[{"forward": cell_params}, ...]``).

Flax stores one Dense per gate (``ii``, ``if``, ``ig``, ``io`` for inputs; ``hi`` ... for
the recurrent side, which carries the bias); seqnets stacks the gates side by side. The
conversions are exact (concatenation and slicing, no arithmetic), except that Flax GRU's
separate input biases of ``r`` and ``z`` become seqnets' single ``b``, which is exact too
because Flax's ``hr`` and ``hz`` have no bias.

The per-cell names of version 0.1.0 (``from_flax_lstm``, ``to_flax_gru``, ... and the
older ``from_flax_simple``/``to_flax_simple``) are deprecated aliases of these two,
removed in seqnets 0.2.0. `RNN`, the linen module that runs a seqnets cell or stack,
lives in `seqnets.interop.linen` and is the one thing here that needs Flax
(``pip install 'seqnets[flax]'``); it is imported on first use.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from seqnets.cells.base import Cell
from seqnets.interop._deprecated import deprecated_pairs
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
_GRU_GATES = ("r", "z", "n")


def _inner(flax_params: dict) -> dict:
    """Accepts both ``{"params": {...}}`` (what ``Module.init`` returns) and the inner dict."""
    return flax_params.get("params", flax_params)


def _get(tree: dict, *path: str) -> Array:
    return jnp.asarray(lookup(tree, path, "Flax", "Pass the params of the matching flax.linen "
                              "cell."), jnp.float32)


def _gates(p: dict, side: str, gates: tuple[str, ...], leaf: str) -> Array:
    """Flax's per-gate Dense ``side + gate`` leaves, side by side on the last axis."""
    return jnp.concatenate([_get(p, f"{side}{g}", leaf) for g in gates], axis=-1)


def _split(params: dict[str, Array], gates: tuple[str, ...]) -> tuple[list, list, list]:
    """seqnets' ``w_x``, ``w_h`` and ``b``, each split into its per-gate blocks."""
    n = len(gates)
    return (jnp.split(params["w_x"], n, axis=1), jnp.split(params["w_h"], n, axis=1),
            jnp.split(params["b"], n))


def _lstm_from_flax(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.LSTMCell`` or ``OptimizedLSTMCell`` -> seqnets `lstm` params.

    Returns ``{"w_x": (F, 4H), "w_h": (H, 4H), "b": (4H,)}``, gates in the order i, f, g, o.
    """
    p = _inner(flax_params)
    return {"w_x": _gates(p, "i", _LSTM_GATES, "kernel"), "w_h": _gates(p, "h", _LSTM_GATES, "kernel"),
            "b": _gates(p, "h", _LSTM_GATES, "bias")}


def _lstm_to_flax(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `lstm` params -> the ``params`` collection of Flax's (Optimized)LSTMCell."""
    w_x, w_h, b = _split(params, _LSTM_GATES)
    out: dict[str, Any] = {}
    for k, g in enumerate(_LSTM_GATES):
        out[f"i{g}"] = {"kernel": w_x[k]}
        out[f"h{g}"] = {"kernel": w_h[k], "bias": b[k]}  # Flax's recurrent Dense holds the bias
    return out


def _gru_from_flax(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.GRUCell`` -> seqnets `gru` params."""
    p = _inner(flax_params)
    return {"w_x": _gates(p, "i", _GRU_GATES, "kernel"), "w_h": _gates(p, "h", _GRU_GATES, "kernel"),
            "b": _gates(p, "i", _GRU_GATES, "bias"), "b_hn": _get(p, "hn", "bias")}


def _gru_to_flax(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `gru` params -> the ``params`` collection of Flax's GRUCell."""
    w_x, w_h, b = _split(params, _GRU_GATES)
    out: dict[str, Any] = {}
    for k, g in enumerate(_GRU_GATES):
        out[f"i{g}"] = {"kernel": w_x[k], "bias": b[k]}  # here the input Dense holds it
        out[f"h{g}"] = {"kernel": w_h[k]}
    out["hn"]["bias"] = params["b_hn"]
    return out


def _elman_from_flax(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.SimpleCell`` (without ``residual``) -> seqnets `elman` params.

    Flax's default activation is tanh, as `elman`'s is; pick the same one on both sides.
    """
    p = _inner(flax_params)
    return {
        "w_x": _get(p, "i", "kernel"),
        "w_h": _get(p, "h", "kernel"),
        "b": _get(p, "i", "bias"),
    }


def _elman_to_flax(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `elman` params -> the ``params`` collection of Flax's SimpleCell."""
    return {"i": {"kernel": params["w_x"], "bias": params["b"]}, "h": {"kernel": params["w_h"]}}


register("flax", "lstm", Converter(_lstm_from_flax, _lstm_to_flax,
                                   "flax.linen.LSTMCell, OptimizedLSTMCell"))
register("flax", "gru", Converter(_gru_from_flax, _gru_to_flax, "flax.linen.GRUCell"))
register("flax", "elman", Converter(_elman_from_flax, _elman_to_flax, "flax.linen.SimpleCell"))


def _check_model(model: Any, where: str) -> str:
    return check_flax_model(model, "flax", where)


def from_flax(flax_params: dict, cell: Cell | str) -> dict[str, Array]:
    """A Flax linen cell's parameters -> one seqnets cell's parameters.

    Args:
      flax_params: what the Flax cell's ``init`` returns (``{"params": {...}}``) or the
        inner dict.
      cell: the seqnets cell they are for: a `Cell` (``seqnets.lstm(16)``), whose
        ``init`` the result is then checked against, or its name (``"lstm"``).

    Returns:
      The cell's params, e.g. for `lstm` ``{"w_x": (F, 4H), "w_h": (H, 4H), "b": (4H,)}``
      with the gates in the order i, f, g, o.

    Raises:
      ValueError: no Flax converter for the cell, a Flax parameter missing, or the
        result not fitting ``cell``.
    """
    where = "from_flax"
    conv = converter("flax", _check_model(cell, where), where)
    params = conv.read(flax_params)
    if isinstance(cell, Cell):
        check_cell_params(params, cell, conv, where)
    return params


def to_flax(params: dict[str, Array], cell: Cell | str) -> dict[str, Any]:
    """One seqnets cell's parameters -> the ``params`` collection of the Flax linen cell.

    Args:
      params: the cell's params, as ``cell.init`` makes them.
      cell: a `Cell` (the params are checked against its ``init`` first) or its name.

    Returns:
      The inner dict of the Flax cell's variables: use it as ``{"params": result}``.
    """
    where = "to_flax"
    conv = converter("flax", _check_model(cell, where), where)
    if isinstance(cell, Cell):
        check_cell_params(params, cell, conv, where)
    return conv.write(params)


# The names of 0.1.0, deprecated (each call warns with its replacement), removed in 0.2.0.
(from_flax_lstm, to_flax_lstm, from_flax_gru, to_flax_gru, from_flax_elman, to_flax_elman,
 from_flax_simple, to_flax_simple) = deprecated_pairs(
    from_flax, to_flax, {"lstm": "lstm", "gru": "gru", "elman": "elman", "simple": "elman"})


def __getattr__(name: str) -> Any:
    # RNN needs Flax; importing it lazily keeps `import seqnets.interop` free of Flax.
    if name == "RNN":
        from seqnets.interop.linen import RNN

        return RNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
