"""The benchmark harness at tiny sizes: every registry runs, goals name real competitors,
and the competitors of a workload train on the same arrays."""

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import harness, runners
from benchmarks import rnn_training_registry as rt
from benchmarks import rnn_training_report as rr
from seqnets.data import echo_streams

HAVE_TORCH = importlib.util.find_spec("torch") is not None
# Tiny shapes of each workload: the same code paths, a fraction of a second per call.
# Batch 8 so that the best settings' data-parallel step splits it over the tests' 8 devices.
TINY = {"A": dict(batch=8, time=3, inputs=2, hidden=8), "C": dict(batch=5, time=15, hidden=4, windows=3),
        "D": dict(batch=8, inputs=1, hidden=8)}
D_TIMES = (6,)  # one length: each more compiles every competitor again


def tiny(workload: str) -> tuple[harness.Workload, ...]:
    return tuple(dataclasses.replace(w, **TINY[workload]) for w in rt.workloads(D_TIMES)[workload])


def test_goals_name_registered_competitors():
    registries = {k: rt.registry(k) for k in "ABCD"}
    harness.check_goals(rt.goals(), registries)  # raises on an unknown id
    for goal in rt.goals():
        ids = [c.id for c in registries[goal.workload]]
        assert goal.ours in ids and goal.theirs in ids, goal
    renamed = harness.Goal("A", "seqnets_best", "PyTorch nn.LSTM", 1.25)  # a label, not an id
    with pytest.raises(ValueError, match=r"'PyTorch nn.LSTM'.*does not register"):
        harness.check_goals([renamed], registries)
    with pytest.raises(ValueError, match="workload 'E'"):
        harness.check_goals([harness.Goal("E", "a", "b", 1.0)], registries)


def test_duplicate_ids_are_refused():
    c = rt.registry("A")[0]
    with pytest.raises(ValueError, match="repeated: \\['seqnets_default'\\]"):
        harness.check_registry([c, c])


def test_b_is_a_at_another_shape():
    assert rt.registry("B") is rt.registry("A")  # so running A's registry covers B's


# Each workload compiles up to a dozen programs: 10-20 s apiece, so they run with -m slow;
# the echo data and the goals' ids are checked by default (the tests below and above).
@pytest.mark.slow
@pytest.mark.parametrize("workload", "ACD")
def test_every_competitor_trains_on_the_same_arrays(workload):
    records = []
    for w in tiny(workload):
        built = harness.build(w, rt.registry(workload), warmup=1)
        torch_ids = {c.id for c in rt.registry(workload) if c.requires == "torch"}
        if HAVE_TORCH:
            assert built.skipped == {}
        else:
            assert built.skipped == dict.fromkeys(torch_ids, "torch is not importable")
        assert set(built.runners) | set(built.skipped) == {c.id for c in rt.registry(workload)}

        first = {i: r.first_batch() for i, r in built.runners.items()}
        expected = (harness.classifier_data(w) if workload != "C"
                    else tuple(a[:, :w.time] for a in harness.echo_data(w)))
        for i, (x, y) in first.items():
            np.testing.assert_array_equal(np.asarray(x, np.float64).reshape(expected[0].shape),
                                          expected[0], err_msg=i)
            np.testing.assert_array_equal(np.asarray(y, np.int64), expected[1], err_msg=i)

        rows = harness.time_rounds(w, built, rounds=1, steps=1, pause=0.0)
        assert list(rows) == list(built.runners)  # registry order
        for i, row in rows.items():
            assert row.calls == 1 and np.isfinite(row.per_second) and row.per_second > 0, i
        if workload == "D":  # PyTorch's figure needs a fresh process: not in the fast test
            for i in ("seqnets_lstm", "flax_optimized_lstm"):
                peak, how = built.runners[i].peak_memory()
                # At least the (batch, time, 4 * hidden) float32 gate buffers the backward reads.
                assert peak > 4 * w.batch * w.time * 4 * w.hidden, (i, peak)
                assert "XLA" in how
        if workload == "C":  # the TBPTT runners' figures are XLA's too
            for i in ("seqnets_default", "seqnets_window_loop", "flax_window_loop"):
                peak, how = harness.peak_memory(built.runners[i])
                # At least the (batch, time, hidden) float32 outputs one window's backward reads.
                assert peak > 4 * w.batch * w.time * w.hidden, (i, peak)
                assert "XLA" in how, i
            if HAVE_TORCH:
                assert harness.peak_memory(built.runners["pytorch_window_loop"]) == (
                    None, "RNNWindowLoop does not measure its memory")
        records.append({"workload": workload, **dataclasses.asdict(w),
                        "rows": {i: dataclasses.asdict(r) for i, r in rows.items()},
                        "gflops": {}, "skipped": built.skipped})
    report = {"runs": records, "slopes": {}}
    results = rr.goal_results(report)
    assert {(g["ours"], g["theirs"]) for g in results} == {
        (g.ours, g.theirs) for g in rt.goals() if g.workload == workload}
    times = {r["time"] for r in records}
    for g in results:
        if g["time"] is not None and g["time"] not in times:  # a full-size goal, tiny run
            assert g["ratio"] is None and g["why"].startswith("T = "), g
            continue
        assert (g["ratio"] is None) == (not HAVE_TORCH and "pytorch" in g["theirs"]), g


def test_echo_competitors_see_the_echo_task():
    """The echo bits are seqnets.data.echo_streams': y is x three steps later, first targets 0."""
    (w,) = tiny("C")
    x, y = harness.echo_data(w)
    ref_x, ref_y = echo_streams(0, series_length=w.batch * w.windows * w.time, batch_size=w.batch)
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(y[0, :3], 0)
    np.testing.assert_array_equal(y[:, 3:], x[:, :-3])
    np.testing.assert_array_equal(y[1:, :3], x[:-1, -3:])  # rows are one contiguous series


def test_cost_slope_recovers_a_line():
    times = (784, 4096, 16384)
    slope, intercept = harness.cost_slope(times, [0.1 + 2e-4 * t for t in times])
    assert slope == pytest.approx(2e-4) and intercept == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least two lengths"):
        harness.cost_slope([784], [0.1])
    # Per competitor over a workload's runs; one missing at a length gets no slope.
    runs = [{"time": t, "rows": {"a": {"median_call_seconds": 1e-3 * t},
                                 **({"b": {"median_call_seconds": 1.0}} if t > 784 else {})}}
            for t in times]
    fits = rr.slopes(runs)
    assert list(fits) == ["a"] and fits["a"]["seconds_per_step"] == pytest.approx(1e-3)


def test_linear_competitors_cover_every_mode():
    ids = [c.id for c in rt.registry("D")]
    for cell in rt.LINEAR_CELLS:
        for mode in rt.LINEAR_MODES:
            assert f"{cell}_{mode}" in ids
    assert f"{rt.DEFAULT_LINEAR_CELL}_best" in ids


def test_xla_peak_memory_counts_arguments_and_temporaries():
    import jax
    import jax.numpy as jnp

    x = jnp.ones((64, 64))
    peak, how = runners.xla_peak_memory(jax.jit(lambda a: jnp.tanh(a @ a) @ a), x)
    # The argument and the output (16 KiB each) at least; the temporary a @ a is likely too.
    assert peak >= 2 * x.nbytes and how == runners.XLA_MEMORY


def test_a_runner_without_peak_memory_says_so():
    class Plain:
        def __call__(self):
            pass

    assert harness.peak_memory(Plain()) == (None, "Plain does not measure its memory")


def test_the_stored_results_render(monkeypatch):
    """The committed results still render as the docs include them (same report format)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    for folder in (root, root / "d"):
        report = json.loads((folder / "latest.json").read_text())
        # The noisy-run verdict compares the load with the core count of the machine that
        # renders, which is the one that measured: the machine the report names.
        cores = int(re.search(r"(\d+) cores", report["machine"]).group(1))
        monkeypatch.setattr(rr.os, "cpu_count", lambda cores=cores: cores)
        assert rr.to_markdown(report) + "\n" == (folder / "latest.md").read_text()


@pytest.mark.slow  # 28 s of compiling six train steps; test_xlstm_benchmark runs benchmarks.cell_steps
def test_matrix_cells_runs_at_tiny_shapes(tmp_path):
    """benchmarks/matrix_cells.py: every cell and baseline trains, with a memory figure,
    and the report is written as the docs include it."""
    from benchmarks import matrix_cells

    report = matrix_cells.main(["--batch", "2", "--time", "8", "--hidden", "32", "--rounds",
                                "1", "--calls", "1", "--cells", "delta_net", "mamba2",
                                "--out", str(tmp_path)])
    assert set(report["rows"]) == {"delta_net auto", "mamba2 auto", "lstm", "min_gru"}
    assert all(r["per_second"] > 0 and r["peak_bytes"] > 0 for r in report["rows"].values())
    assert report["rows"]["lstm"]["x_lstm"] == 1.0
    assert json.loads((tmp_path / "latest.json").read_text())["rows"] == report["rows"]
    assert (tmp_path / "latest.md").read_text() == matrix_cells.markdown(report)
    assert "4 heads, state 8 x 8 per head" in report["cells"]["delta_net"]
