"""Flax linen interop: parameter conversion for Flax's cells (no Flax import needed).

Names follow seqnets' cells; every converter takes one cell's parameters and returns one
cell's parameters, as the `seqnets.interop.torch` converters do for PyTorch's cells:

| seqnets cell | Flax linen cell | Flax -> seqnets | seqnets -> Flax |
|---|---|---|---|
| `lstm` | ``LSTMCell``, ``OptimizedLSTMCell`` | `from_flax_lstm` | `to_flax_lstm` |
| `gru` | ``GRUCell`` | `from_flax_gru` | `to_flax_gru` |
| `elman` | ``SimpleCell`` (tanh, no ``residual``) | `from_flax_elman` | `to_flax_elman` |

``from_flax_*`` accept what ``cell.init`` returns (``{"params": {...}}``) or the inner
dict; ``to_flax_*`` return the inner dict (the ``params`` collection). Flax has no layer
stack of its own: convert each layer's cell and put the results in a list, which is what
`seqnets.stack` params are (``[{"forward": cell_params}, ...]``).

Flax stores one Dense per gate (``ii``, ``if``, ``ig``, ``io`` for inputs; ``hi`` ... for
the recurrent side, which carries the bias); seqnets stacks the gates side by side. The
conversions are exact (concatenation and slicing, no arithmetic), except that Flax GRU's
separate input biases of ``r`` and ``z`` become seqnets' single ``b``, which is exact too
because Flax's ``hr`` and ``hz`` have no bias.

``from_flax_simple`` and ``to_flax_simple`` are deprecated aliases of the ``elman``
names, removed in the next release. `RNN`, the linen module that runs a seqnets cell or
stack, lives in `seqnets.interop.linen` and is the one thing here that needs Flax
(``pip install 'seqnets[flax]'``); it is imported on first use.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from seqnets.interop._deprecated import deprecated_alias
from seqnets.types import Array

_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


def _inner(flax_params: dict) -> dict:
    """Accepts both ``{"params": {...}}`` (what ``Module.init`` returns) and the inner dict."""
    return flax_params.get("params", flax_params)


def _get(tree: dict, *path: str) -> Array:
    node = tree
    for name in path:
        if name not in node:
            raise ValueError(
                f"Flax parameters lack {'/'.join(path)}; found keys {sorted(node)}. "
                "Pass the params of the matching flax.linen cell."
            )
        node = node[name]
    return jnp.asarray(node, jnp.float32)


def from_flax_lstm(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.LSTMCell`` or ``OptimizedLSTMCell`` -> seqnets `lstm` params.

    Returns ``{"w_x": (F, 4H), "w_h": (H, 4H), "b": (4H,)}``, gates in the order i, f, g, o.
    """
    p = _inner(flax_params)
    return {
        "w_x": jnp.concatenate([_get(p, f"i{g}", "kernel") for g in _LSTM_GATES], axis=1),
        "w_h": jnp.concatenate([_get(p, f"h{g}", "kernel") for g in _LSTM_GATES], axis=1),
        "b": jnp.concatenate([_get(p, f"h{g}", "bias") for g in _LSTM_GATES]),
    }


def to_flax_lstm(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `lstm` params -> the ``params`` collection of Flax's (Optimized)LSTMCell."""
    w_x = jnp.split(params["w_x"], 4, axis=1)
    w_h = jnp.split(params["w_h"], 4, axis=1)
    b = jnp.split(params["b"], 4)
    out: dict[str, Any] = {}
    for k, g in enumerate(_LSTM_GATES):
        out[f"i{g}"] = {"kernel": w_x[k]}
        out[f"h{g}"] = {"kernel": w_h[k], "bias": b[k]}
    return out


def from_flax_gru(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.GRUCell`` -> seqnets `gru` params."""
    p = _inner(flax_params)
    return {
        "w_x": jnp.concatenate([_get(p, f"i{g}", "kernel") for g in _GRU_GATES], axis=1),
        "w_h": jnp.concatenate([_get(p, f"h{g}", "kernel") for g in _GRU_GATES], axis=1),
        "b": jnp.concatenate([_get(p, f"i{g}", "bias") for g in _GRU_GATES]),
        "b_hn": _get(p, "hn", "bias"),
    }


def to_flax_gru(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `gru` params -> the ``params`` collection of Flax's GRUCell."""
    w_x = jnp.split(params["w_x"], 3, axis=1)
    w_h = jnp.split(params["w_h"], 3, axis=1)
    b = jnp.split(params["b"], 3)
    out: dict[str, Any] = {}
    for k, g in enumerate(_GRU_GATES):
        out[f"i{g}"] = {"kernel": w_x[k], "bias": b[k]}
        out[f"h{g}"] = {"kernel": w_h[k]}
    out["hn"]["bias"] = params["b_hn"]
    return out


def from_flax_elman(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.SimpleCell`` (without ``residual``) -> seqnets `elman` params.

    Flax's default activation is tanh, as `elman`'s is; pick the same one on both sides.
    """
    p = _inner(flax_params)
    return {
        "w_x": _get(p, "i", "kernel"),
        "w_h": _get(p, "h", "kernel"),
        "b": _get(p, "i", "bias"),
    }


def to_flax_elman(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `elman` params -> the ``params`` collection of Flax's SimpleCell."""
    return {"i": {"kernel": params["w_x"], "bias": params["b"]}, "h": {"kernel": params["w_h"]}}


from_flax_simple = deprecated_alias("from_flax_simple", from_flax_elman)
to_flax_simple = deprecated_alias("to_flax_simple", to_flax_elman)


def __getattr__(name: str) -> Any:
    # RNN needs Flax; importing it lazily keeps `import seqnets.interop` free of Flax.
    if name == "RNN":
        from seqnets.interop.linen import RNN

        return RNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
