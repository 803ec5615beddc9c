"""benchmarks/xlstm_kernels.py at tiny sizes: outputs checked, every competitor timed
(mlstm_kernels, an optional dependency, skipped with a line saying how to install it);
benchmarks/xlstm_cells.py at tiny shapes."""

import importlib.util
import json

from benchmarks import harness
from benchmarks import xlstm_kernels as xk


def test_xlstm_kernels_runs_at_tiny_sizes(tmp_path, capsys):
    report = xk.main(["--tiny", "--rounds", "1", "--steps", "1", "--out", str(tmp_path)])
    have_nx = importlib.util.find_spec(xk.NX) is not None
    ids = {c.id for c in xk.registry(xk.TINY_HEADS)}
    harness.check_goals(xk.goals(), {"mLSTM": xk.registry(xk.TINY_HEADS)})
    assert set(report["rows"]) | set(report["skipped"]) == ids
    assert ("mlstm_kernels_native" in report["skipped"]) == (not have_nx)
    if not have_nx:
        assert xk.INSTALL_NX in capsys.readouterr().out
    for errors in report["agreement"].values():  # h and the 5 gradients, against sequential
        assert len(errors) == 6 and max(errors) < 1e-3
    assert json.loads((tmp_path / "latest.json").read_text())["goals"] == report["goals"]
    assert "| seqnets chunked |" in (tmp_path / "latest.md").read_text()


def test_xlstm_cells_runs_at_tiny_shapes(tmp_path):
    """benchmarks/xlstm_cells.py: every cell trains against the LSTM, with a memory figure,
    and the report is written as the docs include it."""
    from benchmarks import xlstm_cells

    report = xlstm_cells.main(["--batch", "2", "--time", "8", "--hidden", "16", "--rounds",
                               "1", "--calls", "1", "--competitors", "slstm", "mlstm chunked",
                               "--out", str(tmp_path)])
    assert set(report["rows"]) == {"slstm", "mlstm chunked", "lstm"}
    assert all(r["per_second"] > 0 and r["peak_bytes"] > 0 for r in report["rows"].values())
    assert report["rows"]["lstm"]["x_lstm"] == 1.0
    assert json.loads((tmp_path / "cells.json").read_text())["rows"] == report["rows"]
    assert (tmp_path / "cells.md").read_text() == xlstm_cells.markdown(report)
