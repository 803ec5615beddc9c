"""The network of ``echo``: a `seqnets.stack` and a linear head on every step, and its
truncated-BPTT loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

import seqnets as sn
from experiments import models
from seqnets.training import accuracy, softmax_cross_entropy

if TYPE_CHECKING:
    from experiments.echo.configs import Config

NUM_CLASSES = 2


def make_model(config: Config) -> sn.Stack:
    """The stack of ``--num-layers`` cells; raises ValueError for a bad size."""
    return sn.stack(models.CELLS[config.cell](config.hidden_size), num_layers=config.num_layers)


def init_params(model: sn.Stack, key: jax.Array) -> dict:
    """Recurrent layers for 1-bit inputs, and a linear head ``(output_size, 2)``."""
    return models.init_params(model, key, 1, NUM_CLASSES)


def make_loss_fn(model: sn.Stack):
    """The TBPTT loss: ``(params, carry, (x, y), key) -> (loss, (carry, metrics))``."""

    def loss_fn(params, carry, batch, key):
        del key
        x, y = batch  # (batch, window) bits
        carry, ys = model.apply(params["rnn"], x[..., None].astype(jnp.float32), carry=carry)
        logits = models.head(params, ys)  # (batch, window, 2)
        return softmax_cross_entropy(logits, y), (
            carry, {"accuracy": accuracy(logits, y), "predictions": jnp.argmax(logits, -1)}
        )

    return loss_fn
