"""The experiments' models: a seqnets stack and a linear head, and a classifier over
residual blocks (`seqnets.layers.residual_block`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import seqnets as sn
from seqnets import layers
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
    """A classifier over residual blocks (`seqnets.layers.residual_block`), as in the LRU
    and Griffin papers.

    A linear encoder of each step's input to ``width`` features, ``num_layers`` blocks,
    then the time-mean of the normed output and a linear head.

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

    @property
    def block(self) -> layers.ResidualBlock:
        """The library block every layer of the model is."""
        return layers.residual_block(self.cell, mlp_factor=self.mlp_factor, depth=self.num_layers,
                                     mode=self.mode, chunk_size=self.chunk_size)


def residual_init(model: Residual, key: jax.Array, input_size: int, num_classes: int) -> dict:
    """Parameters of a `Residual` model: encoder, blocks, final norm and head."""
    lecun = jax.nn.initializers.lecun_normal()
    W = model.width
    keys = jax.random.split(key, model.num_layers + 2)
    block = model.block
    return {
        "encoder": {"w": lecun(keys[-2], (input_size, W)), "b": jnp.zeros((W,))},
        "blocks": [block.init(k, W) for k in keys[: model.num_layers]],
        "norm": jnp.ones((W,)),
        "head": {"w": lecun(keys[-1], (W, num_classes)), "b": jnp.zeros((num_classes,))},
    }


def residual_logits(model: Residual, params: dict, xs: jax.Array) -> jax.Array:
    """Logits ``(batch, num_classes)`` of ``xs (batch, time, input_size)``."""
    x = flat_matmul(xs, params["encoder"]["w"]) + params["encoder"]["b"]
    block = model.block
    for block_params in params["blocks"]:
        x = block.apply(block_params, x)
    features = jnp.mean(layers.rms_norm(x, params["norm"]), axis=1)
    return head(params, features)
