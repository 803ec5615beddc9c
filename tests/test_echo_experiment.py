"""The echo experiment: outputs of the smoke run, and keep beating reset."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import echo
from seqnets.data import echo_streams
from seqnets.training import NonFiniteError

ROOT = Path(__file__).resolve().parents[1]


def test_echo_streams_follow_the_tutorial():
    x, y = echo_streams(0, series_length=60, batch_size=3, echo_step=2)
    assert x.shape == y.shape == (3, 20) and x.dtype == np.int32
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    np.testing.assert_array_equal(flat_y[2:], flat_x[:-2])
    np.testing.assert_array_equal(flat_y[:2], 0)
    np.testing.assert_array_equal(echo_streams(0, series_length=60, batch_size=3)[0],
                                  echo_streams(0, series_length=60, batch_size=3)[0])
    with pytest.raises(ValueError, match="multiple of batch_size"):
        echo_streams(0, series_length=61, batch_size=3)


def test_smoke_run_learns_the_echo_and_writes_consistent_outputs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.echo", "--smoke", "--no-progress",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["carry"], r["epoch"], r["step"]) for r in records] == [
        (mode, e, 66 * e) for mode in ("keep", "reset") for e in range(1, 6)
    ]  # 5,000 bits in 5 rows of 1,000, trimmed to 66 windows of 15 steps per epoch
    keep, reset = results["runs"]["keep"], results["runs"]["reset"]
    # Five epochs suffice to learn the echo with the carry kept (measured: all knowable
    # positions right); reset cannot know the first echo_step steps of each window.
    assert keep["knowable_accuracy"] > 0.99 and keep["window_start_accuracy"] > 0.99
    assert reset["window_start_accuracy"] < 0.75
    for mode, run in results["runs"].items():
        mine = [r for r in records if r["carry"] == mode]
        assert run["windows"] == 5 * 66 and run["final_loss"] == mine[-1]["loss"]
        assert mine[-1]["loss"] < 0.5 * mine[0]["loss"]
        assert (tmp_path / f"echo_{mode}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_config_exits_2_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.echo", "--series-length", "61",
         "--workdir", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0].startswith("error: series_length ")
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_raises_the_librarys_error():
    config = echo.Config(series_length=1_500, epochs=2, progress=False,
                         learning_rate=float("inf"))
    with pytest.raises(NonFiniteError, match=r"^step 2 \(epoch 1, window 2\): the loss is not finite"):
        echo.train(config, True, False)


def test_keep_beats_reset_in_a_short_run():
    config = echo.Config(series_length=5_000, epochs=20, progress=False)
    runs = {}
    for mode in ("keep", "reset"):
        result = echo.train(config, mode == "keep", False)
        runs[mode] = echo.evaluate(config, result.params, mode == "keep")
    keep, reset = runs["keep"], runs["reset"]
    assert keep["knowable_accuracy"] > 0.99
    # With reset, the first echo_step steps of each window cannot be known: guesses.
    assert reset["window_start_accuracy"] < 0.75
    assert keep["window_start_accuracy"] > 0.99
    assert keep["knowable_accuracy"] > reset["knowable_accuracy"] + 0.05


def test_python_loop_and_fused_epochs_agree():
    config = echo.Config(series_length=1_500, epochs=2, progress=False)
    fused = echo.train(config, True, False)
    looped = echo.train(dataclasses.replace(config, loop="python"), True, False)
    assert isinstance(fused, echo.TrainResult)
    np.testing.assert_array_equal(fused.window_losses, looped.window_losses)
    for a, b in zip(np.asarray(fused.params["head"]["w"]).ravel(),
                    np.asarray(looped.params["head"]["w"]).ravel(), strict=True):
        assert a == b
