"""The network of ``ptb``: an embedding, a stack of LSTM layers and a softmax over the
10,000 words; dropout on the embedding output, between the layers and before the softmax."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

import seqnets as sn
from seqnets.cells.base import flat_matmul
from seqnets.sequence.dropout import dropout as apply_dropout

if TYPE_CHECKING:
    from experiments.ptb.configs import Config

VOCAB_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class uniform:  # noqa: N801 - an initializer, named as the functions it stands with
    """An initializer uniform in ``[-scale, scale]`` (TF's ``random_uniform_initializer``).

    A value, not a closure: models built from equal configs are equal, so that the
    sampler's compiled loop (`experiments.ptb.sample`) serves them all.
    """

    scale: float

    def __call__(self, key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -self.scale, self.scale)


def make_model(config: Config) -> sn.Stack:
    """The LSTM stack; raises ValueError for a bad size or dropout rate."""
    init = uniform(config.init_scale)
    factory = sn.lstm if config.cell == "lstm" else sn.layer_norm_lstm
    cell = factory(config.hidden_size, forget_bias=0.0, input_init=init, recurrent_init=init)
    return sn.stack(cell, num_layers=config.num_layers, dropout=config.dropout,
                    recurrent_dropout=config.recurrent_dropout, variational=config.variational)


def init_params(config: Config, model: sn.Stack, key: jax.Array) -> dict:
    """``embedding (V, H)``, ``rnn`` (stack), ``softmax``: ``w (H, V)`` (absent if tied), ``b (V,)``."""
    k_emb, k_rnn, k_w, k_b = jax.random.split(key, 4)
    init = uniform(config.init_scale)
    params = {
        "embedding": init(k_emb, (VOCAB_SIZE, config.hidden_size)),
        "rnn": model.init(k_rnn, config.hidden_size),
        "softmax": {"b": init(k_b, (VOCAB_SIZE,))},
    }
    if config.tie_weights:
        if model.output_size != config.hidden_size:
            raise ValueError(f"--tie-weights needs the last layer's width ({model.output_size}) "
                             f"to equal the embedding size ({config.hidden_size}).")
    else:
        params["softmax"]["w"] = init(k_w, (model.output_size, VOCAB_SIZE))
    return params


def softmax_weights(params: dict) -> jax.Array:
    """``(H, V)``: the softmax's own weights, or the embedding transposed when tied."""
    w = params["softmax"].get("w")
    return params["embedding"].T if w is None else w


def logits_fn(params: dict, features: jax.Array) -> jax.Array:
    """``features (..., H)`` -> logits ``(..., V)``."""
    return flat_matmul(features, softmax_weights(params)) + params["softmax"]["b"]


def forward(config: Config, model: sn.Stack, params: dict, carry, x: jax.Array,
            key: jax.Array | None):
    """``x`` int ``(batch, time)`` -> ``(carry, logits (batch, time, V))``; dropout iff ``key``."""
    xs = params["embedding"][x]
    keys = jax.random.split(key, 3) if key is not None else (None, None, None)
    if key is not None:
        xs = apply_dropout(keys[0], xs, config.dropout, variational=config.variational)
    carry, ys = model.apply(params["rnn"], xs, carry=carry, key=keys[1])
    if key is not None:
        ys = apply_dropout(keys[2], ys, config.dropout, variational=config.variational)
    return carry, logits_fn(params, ys)


def token_nll(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Negative log-likelihood of each target, ``(batch, time)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)
