"""The model and data of the multi-process test, shared by the worker and the test."""

import jax
import numpy as np

import seqnets as sn
from seqnets.training import softmax_cross_entropy

GLOBAL_BATCH, TIME, FEATURES, STEPS, LR = 32, 12, 8, 4, 0.5
CELL = sn.lstm(16)


def init_params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"rnn": CELL.init(k1, FEATURES), "w": 0.1 * jax.random.normal(k2, (16, 10))}


def loss_fn(params, batch, key):
    x, y = batch
    carry, _ = sn.scan(CELL, params["rnn"], x)
    return softmax_cross_entropy(carry[1] @ params["w"], y), {}


def example_loss(params, example):
    x, y = example
    return loss_fn(params, (x[None], y[None]), None)[0]


def batches():
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        yield (rng.normal(size=(GLOBAL_BATCH, TIME, FEATURES)).astype(np.float32),
               rng.integers(0, 10, GLOBAL_BATCH).astype(np.int32))
