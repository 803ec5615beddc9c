"""benchmarks/matrix_kernels.py at tiny shapes: it runs, checks its competitors agree, and
writes its JSON and markdown (memax is timed only where it is installed)."""

import json

from benchmarks import matrix_kernels


def test_matrix_kernels_runs_at_tiny_shapes(tmp_path):
    report = matrix_kernels.main([
        "--times", "16", "32", "--dims", "8", "--main-time", "32", "--memory-times", "16",
        "--rounds", "1", "--steps", "1", "--batch", "1", "--heads", "1",
        "--families", "delta", "--memax-upto", "16", "--ceiling-size", "256", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "latest.json").read_text())["runs"] == report["runs"]
    assert "Gated delta rule" in (tmp_path / "latest.md").read_text()
    runs = report["runs"]
    assert [r["time"] for r in runs] == [16, 32]
    for r in runs:
        assert {"chunked", "sequential"} <= set(r["rows"])
        assert all(e <= 1e-4 for e in r["output_error_vs_sequential"].values())
        assert r["chunked_flops"] > 0
    assert "delta chunked (K = 8)" in report["slopes"]
    assert report["memory"][16]["chunked"] > 0
    assert any(g.startswith("chunked / sequential") for g in report["goals"])
