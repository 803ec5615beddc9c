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


def test_smoke_run_writes_its_outputs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.echo", "--smoke", "--no-progress",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["runs"]) == {"keep", "reset"}
    for mode in ("keep", "reset"):
        run = results["runs"][mode]
        assert 0 <= run["knowable_accuracy"] <= 1 and run["windows"] == 5 * 66
        png = (tmp_path / f"echo_{mode}.png").read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) > 10_000
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().split("\n")
               if line]
    assert [r["carry"] for r in records] == ["keep"] * 5 + ["reset"] * 5


def test_keep_beats_reset_in_a_short_run():
    config = echo.Config(series_length=5_000, epochs=20, progress=False)
    runs = {}
    for mode in ("keep", "reset"):
        params, _, _, _ = echo.train(config, mode == "keep", False)
        runs[mode] = echo.evaluate(config, params, mode == "keep")
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
    np.testing.assert_array_equal(fused[1], looped[1])
    for a, b in zip(np.asarray(fused[0]["head"]["w"]).ravel(),
                    np.asarray(looped[0]["head"]["w"]).ravel(), strict=True):
        assert a == b
