"""Shared fixtures. Tests run on the CPU with float32, on 8 CPU devices.

The device count must be set before JAX's first operation; tests that do not shard
anything run on the first device as usual.
"""

import jax

jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402

import seqnets as sn  # noqa: E402

CELL_FACTORIES = {"lstm": sn.lstm, "gru": sn.gru, "elman": sn.elman}


@pytest.fixture(params=sorted(CELL_FACTORIES))
def cell_name(request):
    return request.param


def make(cell_name: str, hidden: int = 5):
    return CELL_FACTORIES[cell_name](hidden)


def random_inputs(key, shape):
    return jax.random.normal(jax.random.key(key), shape)

# A script that tests/test_parallel.py runs in subprocesses; importing it would run it.
collect_ignore = ["multihost_worker.py"]
