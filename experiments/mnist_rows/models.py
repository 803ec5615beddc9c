"""The network of ``mnist_rows``: a `seqnets.stack` over the rows, a linear head on the
last step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

import seqnets as sn
from experiments import models

if TYPE_CHECKING:
    from experiments.mnist_rows.configs import Config

NUM_CLASSES = 10


def make_model(config: Config) -> sn.Stack:
    """The stack of ``--num-layers`` cells; raises ValueError for a bad size or rate."""
    cell = models.CELLS[config.cell](config.hidden_size)
    return sn.stack(
        cell, num_layers=config.num_layers, bidirectional=config.bidirectional,
        dropout=config.dropout,
    )


def init_params(model: sn.Stack, key: jax.Array) -> dict:
    """Recurrent layers for 28-pixel rows, and a linear head ``(output_size, 10)``."""
    return models.init_params(model, key, 28, NUM_CLASSES)


def logits_fn(model: sn.Stack, params: dict, images: jax.Array, key: jax.Array | None) -> jax.Array:
    """``images`` uint8 ``(batch, 28, 28)``, rows as time steps -> logits ``(batch, 10)``."""
    xs = images.astype(jnp.float32) / 255.0
    _, ys = model.apply(params["rnn"], xs, key=key)
    features = sn.final_outputs(ys, stack=model)
    return models.head(params, features)
