"""The networks of ``pixel_mnist``: residual blocks of linear recurrences
(`experiments.models.Residual`), or a plain `seqnets.stack` of any cell."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

import seqnets as sn
from experiments import models

if TYPE_CHECKING:
    from experiments.pixel_mnist.configs import Config

PIXELS = 28 * 28
NUM_CLASSES = 10


def make_model(config: Config) -> models.Residual | sn.Stack:
    """The ``--model``; raises ValueError for a bad size, layer count or rate."""
    cell = models.CELLS[config.cell](config.hidden_size)
    if config.model == "stack":
        return sn.stack(cell, num_layers=config.num_layers, bidirectional=config.bidirectional,
                        dropout=config.dropout)
    if config.num_layers < 1:
        raise ValueError(f"--num-layers must be at least 1; got {config.num_layers}.")
    return models.Residual(cell, config.hidden_size, config.num_layers, mode=config.mode,
                           chunk_size=config.chunk_size)


def init_params(model: models.Residual | sn.Stack, key: jax.Array) -> dict:
    """Parameters for one input per step and 10 classes."""
    if isinstance(model, sn.Stack):
        return models.init_params(model, key, 1, NUM_CLASSES)
    return models.residual_init(model, key, 1, NUM_CLASSES)


def pixel_order(config: Config) -> np.ndarray:
    """The order in which the 784 pixels are read: raster order, or one fixed permutation."""
    if not config.permute:
        return np.arange(PIXELS)
    return np.random.default_rng(config.permutation_seed).permutation(PIXELS)


def logits_fn(config: Config, model, params: dict, images: jax.Array, key) -> jax.Array:
    """``images`` uint8 ``(batch, 28, 28)`` read as ``(batch, 784, 1)`` -> logits ``(batch, 10)``."""
    xs = images.reshape(images.shape[0], PIXELS)[:, pixel_order(config)]
    xs = (xs.astype(jnp.float32) / 255.0)[..., None]
    if isinstance(model, sn.Stack):
        _, ys = model.apply(params["rnn"], xs, key=key, mode=config.mode,
                            chunk_size=config.chunk_size)
        return models.head(params, sn.final_outputs(ys, stack=model))
    return models.residual_logits(model, params, xs)
