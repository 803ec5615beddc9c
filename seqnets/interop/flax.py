"""Flax linen interop: parameter conversion for Flax's cells, and a linen module.

Flax stores one Dense per gate (``ii``, ``if``, ``ig``, ``io`` for inputs; ``hi`` ... for
the recurrent side, which carries the bias); seqnets stacks the gates side by side. The
conversions are exact (concatenation and slicing, no arithmetic), except that Flax GRU's
separate input biases of ``r`` and ``z`` become seqnets' single ``b``, which is exact too
because Flax's ``hr`` and ``hz`` have no bias.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from seqnets.cells.base import Array, Cell
from seqnets.sequence.stack import Stack, stack

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
    """Params of ``flax.linen.LSTMCell`` or ``OptimizedLSTMCell`` -> seqnets `lstm` params."""
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


def from_flax_simple(flax_params: dict) -> dict[str, Array]:
    """Params of ``flax.linen.SimpleCell`` (without ``residual``) -> seqnets `elman` params."""
    p = _inner(flax_params)
    return {
        "w_x": _get(p, "i", "kernel"),
        "w_h": _get(p, "h", "kernel"),
        "b": _get(p, "i", "bias"),
    }


def to_flax_simple(params: dict[str, Array]) -> dict[str, Any]:
    """seqnets `elman` params -> the ``params`` collection of Flax's SimpleCell."""
    return {"i": {"kernel": params["w_x"], "bias": params["b"]}, "h": {"kernel": params["w_h"]}}


class RNN(nn.Module):
    """A Flax linen module that runs a seqnets `Cell` or `Stack` over a sequence.

    Its parameters live in one linen param, ``"seqnets"``, in seqnets' own layout, so
    they can be handed to the pure functions (and back) unchanged.

    Attributes:
      model: a seqnets `Cell` (run as a one-layer stack) or `Stack`.
      unroll: passed to ``lax.scan``.

    Call with ``xs (batch, time, features)`` and optional ``carry``, ``lengths``,
    ``resets``; returns ``ys (batch, time, output_size)``, or ``(carry, ys)`` with
    ``return_carry=True``. Dropout between layers needs ``deterministic=False`` and a
    ``"dropout"`` RNG.
    """

    model: Cell | Stack
    unroll: int = 1

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        carry: Any = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        return_carry: bool = False,
        deterministic: bool = True,
    ):
        model = self.model if isinstance(self.model, Stack) else stack(self.model)
        params = self.param("seqnets", lambda key: model.init(key, xs.shape[-1]))
        key = None
        if not deterministic and model.dropout > 0.0:
            key = self.make_rng("dropout")
        carry, ys = model.apply(
            params, xs, carry=carry, lengths=lengths, resets=resets, key=key, unroll=self.unroll
        )
        return (carry, ys) if return_carry else ys
