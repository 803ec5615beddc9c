"""The MNIST-rows experiment: smoke run outputs, and kill-then-resume equality (parameters
and every metrics record)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import pytest
from mnist_runs import final_state
from mnist_runs import records as saved_records

from experiments import mnist_rows

ROOT = Path(__file__).resolve().parents[1]


def saved_steps(workdir):
    """Steps of the complete checkpoints (orbax writes into a temporary folder first)."""
    return [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]


def run(*args, wait=True, timeout=300):
    cmd = [sys.executable, "-m", "experiments.mnist_rows", "--no-progress", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if wait:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        return out
    return proc


def test_smoke_run_writes_metrics_plot_and_results(tmp_path):
    out = run("--smoke", "--workdir", str(tmp_path))
    assert "test accuracy" in out
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # 3,000 images in batches of 128: 23 steps per epoch.
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 23), (2, 46)]
    assert records[1]["train_loss"] < records[0]["train_loss"]
    assert records[1]["test_loss"] < records[0]["test_loss"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_examples"] == 1000 and results["train_examples"] == 3000
    assert results["steps"] == results["total_steps"] == 46
    # The final evaluation is the last epoch's: same parameters, same test images.
    assert results["test_accuracy"] == records[-1]["test_accuracy"]
    assert results["test_loss"] == records[-1]["test_loss"]
    assert results["test_accuracy"] > 0.3  # well above chance (0.1) after 46 steps
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second run refuses to overwrite the first unless asked.
    proc = run("--smoke", "--workdir", str(tmp_path), wait=False)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--resume" in out and "--overwrite" in out
    assert "Traceback" not in out


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    """SIGKILL the moment the end-of-epoch checkpoint appears (step 23: one epoch), then
    resume: the parameters and every metrics record equal an uninterrupted run's. The
    epoch's record is written before its checkpoint, so the kill cannot lose it (it
    did when the record came after: issue 24)."""
    args = ["--smoke", "--checkpoint-every", "23"]
    run(*args, "--workdir", str(tmp_path / "straight"))

    interrupted = tmp_path / "interrupted"
    proc = run(*args, "--workdir", str(interrupted), wait=False)
    deadline = time.time() + 120
    while not saved_steps(interrupted):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(saved_steps(interrupted))
    assert killed_at == 23
    assert [r["epoch"] for r in saved_records(interrupted)] == [1]
    # The killed run's lock file still names it, but the kernel released its flock: the
    # stale lock does not block the resumed run.
    assert (interrupted / ".lock").read_text().strip() == str(proc.pid)
    out = run(*args, "--workdir", str(interrupted), "--resume")
    assert f"resumed from step {killed_at}" in out

    config = mnist_rows.effective(mnist_rows.Config(smoke=True))
    a, b = final_state(tmp_path / "straight", config), final_state(interrupted, config)
    assert int(a.step) == int(b.step) == 46
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)
    ra = json.loads((tmp_path / "straight" / "results.json").read_text())
    rb = json.loads((interrupted / "results.json").read_text())
    assert ra["test_accuracy"] == rb["test_accuracy"] and ra["test_loss"] == rb["test_loss"]
    # The metrics too, record for record (timings aside): the resumed epoch's train loss and
    # accuracy cover all its steps, from the running sums saved in the checkpoint.
    assert [r["epoch"] for r in saved_records(interrupted)] == [1, 2]
    assert saved_records(interrupted) == saved_records(tmp_path / "straight")


@pytest.mark.slow  # test_faults.py refuses --resume --seed 1 on a smaller run by default
def test_resume_with_another_config_is_refused(tmp_path):
    run("--smoke", "--workdir", str(tmp_path))
    proc = run("--smoke", "--workdir", str(tmp_path), "--resume", "--hidden-size", "64",
               wait=False)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "hidden_size: saved 128, now 64" in out
    assert "Traceback" not in out


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "experiments.mnist_rows", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    for field in mnist_rows.Config.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in out, field
    assert "Peak Adam learning rate" in out


@pytest.mark.slow
def test_full_run_reaches_99_percent(tmp_path):
    """The README command; about 7 minutes on 2 cores."""
    run("--workdir", str(tmp_path), timeout=1200)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_examples"] == 10000 and results["test_accuracy"] >= 0.99
