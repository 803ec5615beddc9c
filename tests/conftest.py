"""Shared fixtures. Tests run on the CPU with float32."""

import jax
import pytest

import seqnets as sn

CELL_FACTORIES = {"lstm": sn.lstm, "gru": sn.gru, "elman": sn.elman}


@pytest.fixture(params=sorted(CELL_FACTORIES))
def cell_name(request):
    return request.param


def make(cell_name: str, hidden: int = 5):
    return CELL_FACTORIES[cell_name](hidden)


def random_inputs(key, shape):
    return jax.random.normal(jax.random.key(key), shape)
