"""The experiments' models: a seqnets stack and a linear head, and a residual stack of blocks."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import seqnets as sn
from seqnets.cells.base import flat_matmul

CELLS = {"lstm": sn.lstm, "gru": sn.gru, "elman": sn.elman, "min_gru": sn.min_gru,
         "min_lstm": sn.min_lstm, "lru": sn.lru, "rg_lru": sn.rg_lru}


def init_params(model: sn.Stack, key: jax.Array, input_size: int, num_classes: int) -> dict:
    """``{"rnn": stack params, "head": {"w": (output_size, num_classes), "b": (num_classes,)}}``."""
    k_rnn, k_head = jax.random.split(key)
    return {
        "rnn": model.init(k_rnn, input_size),
        "head": {
            "w": jax.nn.initializers.lecun_normal()(k_head, (model.output_size, num_classes)),
            "b": jnp.zeros((num_classes,), jnp.float32),
        },
    }


def head(params: dict, features: jax.Array) -> jax.Array:
    """Logits ``(..., num_classes)`` of ``features (..., output_size)``."""
    return features @ params["head"]["w"] + params["head"]["b"]


class Residual(NamedTuple):
    """A residual stack of recurrent blocks, as in the LRU and Griffin papers.

    Each block: ``x + rnn(norm(x))``, then ``x + mlp(norm(x))`` with a gated (GeGLU) MLP;
    an input encoder before the blocks, and the time-mean of the normed output after them.

    Attributes:
      cell: the recurrent cell of every block (input and output width ``width``).
      width: the model width.
      num_layers: how many blocks.
      mlp_factor: the MLP's hidden width is ``mlp_factor * width``.
      mode: `seqnets.scan`'s evaluation order for the cell (``"auto"``, ``"sequential"``...).
      chunk_size: for ``mode="chunked"``.
    """

    cell: sn.Cell
    width: int
    num_layers: int
    mlp_factor: int = 2
    mode: str = "auto"
    chunk_size: int | None = None


def residual_init(model: Residual, key: jax.Array, input_size: int, num_classes: int) -> dict:
    """Parameters of a `Residual` model: encoder, blocks, final norm and head."""
    lecun = jax.nn.initializers.lecun_normal()
    W, M = model.width, model.mlp_factor * model.width
    keys = jax.random.split(key, model.num_layers + 2)
    blocks = []
    for k in keys[: model.num_layers]:
        k_rnn, k_gate, k_up, k_down = jax.random.split(k, 4)
        blocks.append({
            "norm_rnn": jnp.ones((W,)), "rnn": model.cell.init(k_rnn, W),
            "norm_mlp": jnp.ones((W,)), "gate": lecun(k_gate, (W, M)), "up": lecun(k_up, (W, M)),
            "down": lecun(k_down, (M, W)) / jnp.sqrt(2.0 * model.num_layers),
        })
    return {
        "encoder": {"w": lecun(keys[-2], (input_size, W)), "b": jnp.zeros((W,))},
        "blocks": blocks,
        "norm": jnp.ones((W,)),
        "head": {"w": lecun(keys[-1], (W, num_classes)), "b": jnp.zeros((num_classes,))},
    }


def rms_norm(x: jax.Array, scale: jax.Array, eps: float = 1e-6) -> jax.Array:
    """``x / rms(x) * scale`` over the last axis."""
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def residual_logits(model: Residual, params: dict, xs: jax.Array) -> jax.Array:
    """Logits ``(batch, num_classes)`` of ``xs (batch, time, input_size)``."""
    x = flat_matmul(xs, params["encoder"]["w"]) + params["encoder"]["b"]
    for block in params["blocks"]:
        h = rms_norm(x, block["norm_rnn"])
        _, y = sn.scan(model.cell, block["rnn"], h, mode=model.mode, chunk_size=model.chunk_size)
        x = x + y
        h = rms_norm(x, block["norm_mlp"])
        gated = jax.nn.gelu(flat_matmul(h, block["gate"])) * flat_matmul(h, block["up"])
        x = x + flat_matmul(gated, block["down"])
    features = jnp.mean(rms_norm(x, params["norm"]), axis=1)
    return head(params, features)
