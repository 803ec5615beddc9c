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


@pytest.fixture(scope="session")
def straight(tmp_path_factory):
    """An uninterrupted small mnist_rows run (`mnist_runs.SMALL`): its workdir, and its
    final state. Shared by the fault tests of several files."""
    from mnist_runs import SMALL, final_state, run, steps

    workdir = tmp_path_factory.mktemp("straight")
    proc = run(*SMALL, "--workdir", str(workdir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert steps(workdir) == [30, 40, 46]
    return workdir, final_state(workdir)


@pytest.fixture
def mounts():
    """Paths a test mounted: unmounted afterwards, innermost first."""
    import subprocess

    mounted = []
    yield mounted
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=False)
