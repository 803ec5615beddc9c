"""The model both experiments train: a seqnets stack and a linear head."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import seqnets as sn

CELLS = {"lstm": sn.lstm, "gru": sn.gru, "elman": sn.elman}


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
