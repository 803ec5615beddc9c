"""Train steps of the matrix-state cells (DeltaNet, Gated DeltaNet, GLA, Mamba-2) against
seqnets' LSTM and minGRU of the same width: examples/s and XLA's peak memory, interleaved.

    python -m benchmarks.matrix_cells                  # B 8, T 1,024, width 256 (minutes)
    python -m benchmarks.matrix_cells --modes auto sequential --rounds 5

A train step is forward, backward and an Adam (1e-3) update of one layer of width
``--hidden`` on inputs of that width, and a linear head on the last output, 10 classes
(`benchmarks.harness.classifier_data`), on one CPU device. Every cell runs with its
defaults (heads, state sizes: each cell's docstring), in each of ``--modes`` that its
family has; ``auto`` picks the chunked kernel at this length. All competitors run
interleaved in one process (`benchmarks.harness.time_rounds`): each round starts with a
different one, after a short pause; each figure is the median over every timed call.
Peak memory is XLA's plan for one compiled step (`benchmarks.runners.xla_peak_memory`).
Writes ``benchmarks/results/matrix_cells/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

import seqnets as sn
from benchmarks import cell_steps
from benchmarks.harness import Competitor, Workload, measure, write_report
from seqnets.ops import registry

RESULTS = Path(__file__).resolve().parent / "results" / "matrix_cells"
CELLS: dict[str, Callable[[int], sn.Cell]] = {
    "delta_net": sn.delta_net, "gated_delta_net": sn.gated_delta_net, "gla": sn.gla,
    "mamba2": sn.mamba2}
BASELINES: dict[str, Callable[[int], sn.Cell]] = {"lstm": sn.lstm, "min_gru": sn.min_gru}


def competitors(w: Workload, cells: Sequence[str], modes: Sequence[str]) -> list[Competitor]:
    """Each cell in each of ``modes`` its family has (``"cell mode"``), then the baselines."""
    found = []
    for name in cells:
        family = CELLS[name](w.hidden).family
        for mode in modes:
            if mode in registry.modes(family):
                found.append(Competitor(f"{name} {mode}", f"{name} {mode}",
                                        lambda w, n=name, m=mode: cell_steps.classifier_step(
                                            w, CELLS[n](w.hidden), m)))
    return found + [Competitor(n, n, lambda w, n=n: cell_steps.classifier_step(
        w, BASELINES[n](w.hidden))) for n in BASELINES]


def describe(w: Workload, cells: Sequence[str]) -> dict[str, str]:
    """Each cell's heads and state per head, as built at this width."""
    out = {}
    for name in cells:
        carry = jax.eval_shape(lambda n=name: CELLS[n](w.hidden).initial_carry(1))
        _, heads, k, v = carry["state"].shape
        out[name] = f"{heads} heads, state {k} x {v} per head"
    return out


def markdown(report: dict) -> str:
    """The report's table, and each cell's heads and state at this width."""
    return cell_steps.markdown(report, footer="Cells at this width: " + "; ".join(
        f"{n}: {d}" for n, d in report["cells"].items()) + ".")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--modes", nargs="+", default=["auto"], choices=registry.MODES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2, help="timed calls per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    w = Workload("cells", batch=args.batch, time=args.time, inputs=args.hidden,
                 hidden=args.hidden)
    load = [os.getloadavg()[0]]
    rows, skipped = measure(w, competitors(w, args.cells, args.modes), args.rounds, args.calls,
                            memory=True)
    load.append(os.getloadavg()[0])
    report = cell_steps.report("benchmarks.matrix_cells", argv, w, rows, skipped, load,
                               cells=describe(w, args.cells))
    write_report(args.out, report, markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
