"""Train steps of the xLSTM cells (sLSTM, mLSTM) against seqnets' LSTM of the same width:
examples/s and XLA's peak memory, interleaved in one run.

    python -m benchmarks.xlstm_cells                   # B 16, T 256, width 128 (minutes)
    python -m benchmarks.xlstm_cells --rounds 5 --time 512

A train step is forward, backward and an Adam (1e-3) update of one layer of width
``--hidden`` on inputs of that width and a linear head on the last output, 10 classes
(`benchmarks.harness.classifier_data`), on one CPU device. Competitors: the sLSTM (its
only mode, sequential), the mLSTM in its chunked (``auto``) and sequential modes, and the
LSTM, each with its defaults (4 heads for the xLSTM cells). All run interleaved in one
process (`benchmarks.harness.measure`): each round starts with a different one, after a
short pause; each figure is the median over every timed call. Peak memory is XLA's plan
for one compiled step (`benchmarks.runners.xla_peak_memory`). Writes
``benchmarks/results/xlstm/cells.json`` and ``cells.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import seqnets as sn
from benchmarks import cell_steps
from benchmarks.harness import Competitor, Workload, measure

RESULTS = Path(__file__).resolve().parent / "results" / "xlstm"
# id: (constructor, mode)
COMPETITORS = {
    "slstm": (sn.slstm, "sequential"),
    "mlstm chunked": (sn.mlstm, "chunked"),
    "mlstm sequential": (sn.mlstm, "sequential"),
    "lstm": (sn.lstm, "auto"),
}


def competitors(names: Sequence[str]) -> list[Competitor]:
    """Each competitor's train step: one layer of its cell in its mode, and a head."""
    return [Competitor(n, n, lambda w, n=n: cell_steps.classifier_step(
        w, COMPETITORS[n][0](w.hidden), COMPETITORS[n][1])) for n in names]


def markdown(report: dict) -> str:
    """The report's table (the xLSTM cells at their default 4 heads)."""
    return cell_steps.markdown(report, shape_note=", 4 heads")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--competitors", nargs="+", default=list(COMPETITORS),
                        choices=list(COMPETITORS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = list(dict.fromkeys([*args.competitors, cell_steps.LSTM]))  # the LSTM is the unit
    w = Workload("xlstm_cells", batch=args.batch, time=args.time, inputs=args.hidden,
                 hidden=args.hidden)
    load = [os.getloadavg()[0]]
    rows, skipped = measure(w, competitors(names), args.rounds, args.calls, memory=True)
    load.append(os.getloadavg()[0])
    report = cell_steps.report("benchmarks.xlstm_cells", argv, w, rows, skipped, load)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cells.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "cells.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
