"""What the fault tests share: small mnist_rows runs as real processes, and their outputs.

The runs are smoke runs on 736 images in batches of 32: 23 steps per epoch, 46 in all,
checkpoints kept at steps 30, 40 and 46 with ``--checkpoint-every 10``.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax

from experiments import classification, mnist_rows
from seqnets.training import Checkpointer, create_train_state

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--smoke", "--train-examples", "736", "--batch-size", "32", "--test-examples", "200",
         "--checkpoint-every", "10"]
CONFIG = mnist_rows.effective(mnist_rows.Config(smoke=True, train_examples=736, batch_size=32,
                                                test_examples=200))
# Fields of a metrics record that measure time, not what was computed.
TIMING = ("epoch_seconds", "examples_per_second", "tokens_per_second", "eval_seconds")


def command(*args, progress=False, module="mnist_rows"):
    return [sys.executable, "-m", f"experiments.{module}",
            *([] if progress else ["--no-progress"]), *args]


def environment(env=None):
    return {**os.environ, "SEQNETS_NO_RESTART": "1", **(env or {})}


def run(*args, env=None, progress=False, cwd=ROOT, module="mnist_rows"):
    """Runs an experiment to its end; returns the CompletedProcess (text)."""
    return subprocess.run(command(*args, progress=progress, module=module), cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=environment(env))


def start(*args, cwd=ROOT):
    """Starts mnist_rows in the background; returns the Popen (text pipes)."""
    return subprocess.Popen(command(*args), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment())


def errors(proc) -> list[str]:
    """stderr without absl's warnings about an unprepared TFDS folder."""
    return [line for line in proc.stderr.splitlines() if not line.startswith("WARNING:absl")]


def steps(workdir) -> list[int]:
    """Steps of the complete checkpoints (orbax writes into a temporary folder first)."""
    folder = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() \
        else []


def wait_until(condition, proc, timeout=600):
    """Polls ``condition`` every 20 ms while ``proc`` runs; fails if it ends first."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended first: " + "".join(proc.communicate())
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def like_state(config=CONFIG):
    model = mnist_rows.make_model(config)
    return create_train_state(mnist_rows.init_params(model, jax.random.key(0)),
                              classification.make_optimizer(config, 10), jax.random.key(0))


def final_state(workdir, config=CONFIG):
    """The train state of the newest checkpoint in ``workdir``, on the host."""
    ckpt = Checkpointer(Path(workdir) / "checkpoints", save_every=1)
    try:
        return jax.device_get(ckpt.restore(classification.saved_tree(like_state(config)))["state"])
    finally:
        ckpt.close()


def records(workdir) -> list[dict]:
    """``metrics.jsonl``'s records without their timings."""
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def listing(folder) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def mount_tmpfs(path: Path, options: str) -> None:
    """Mounts a tmpfs at ``path``; skips the test where mounting is not allowed."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                    f"{proc.stderr.strip()}")
