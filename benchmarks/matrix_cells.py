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
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import seqnets as sn
from benchmarks.harness import Competitor, Workload, classifier_data, measure, write_report
from benchmarks.runners import JaxStep
from seqnets.ops import registry
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy

RESULTS = Path(__file__).resolve().parent / "results" / "matrix_cells"
CELLS: dict[str, Callable[[int], sn.Cell]] = {
    "delta_net": sn.delta_net, "gated_delta_net": sn.gated_delta_net, "gla": sn.gla,
    "mamba2": sn.mamba2}
BASELINES: dict[str, Callable[[int], sn.Cell]] = {"lstm": sn.lstm, "min_gru": sn.min_gru}
LSTM = "lstm"  # every ratio divides by the LSTM's step time
NUM_CLASSES = 10


def classifier_step(w: Workload, cell: sn.Cell, mode: str = "auto") -> JaxStep:
    """One layer of ``cell`` and a linear head on the last output, Adam 1e-3, on
    ``classifier_data(w)``."""
    model = sn.stack(cell)
    k_rnn, k_head = jax.random.split(jax.random.key(0))
    params = {"rnn": model.init(k_rnn, w.inputs),
              "w": jax.random.normal(k_head, (w.hidden, NUM_CLASSES)) * w.hidden ** -0.5,
              "b": jnp.zeros((NUM_CLASSES,))}

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x, mode=mode)
        return softmax_cross_entropy(ys[:, -1] @ params["w"] + params["b"], y), {}

    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    batch = tuple(map(jnp.asarray, classifier_data(w)))
    return JaxStep(make_train_step(loss_fn, optimizer), state, batch)


def competitors(w: Workload, cells: Sequence[str], modes: Sequence[str]) -> list[Competitor]:
    """Each cell in each of ``modes`` its family has (``"cell mode"``), then the baselines."""
    found = []
    for name in cells:
        family = CELLS[name](w.hidden).family
        for mode in modes:
            if mode in registry.modes(family):
                found.append(Competitor(f"{name} {mode}", f"{name} {mode}",
                                        lambda w, n=name, m=mode: classifier_step(
                                            w, CELLS[n](w.hidden), m)))
    return found + [Competitor(n, n, lambda w, n=n: classifier_step(w, BASELINES[n](w.hidden)))
                    for n in BASELINES]


def describe(w: Workload, cells: Sequence[str]) -> dict[str, str]:
    """Each cell's heads and state per head, as built at this width."""
    out = {}
    for name in cells:
        carry = jax.eval_shape(lambda n=name: CELLS[n](w.hidden).initial_carry(1))
        _, heads, k, v = carry["state"].shape
        out[name] = f"{heads} heads, state {k} x {v} per head"
    return out


def markdown(report: dict) -> str:
    w = report["workload"]
    lines = [f"Measured {report['date']} on {report['machine']}, jax {report['jax']}; load "
             f"average {report['load'][0]:.2f} at the start, {report['load'][1]:.2f} at the "
             f"end. Command: `{report['command']}`.", "",
             f"Train step (forward, backward, Adam) of one layer, B {w['batch']}, T "
             f"{w['time']:,}, width {w['hidden']}, inputs {w['inputs']}; x LSTM is the LSTM's "
             "step time over this one's.", "",
             "| competitor | examples/s | x LSTM | ms per step | peak memory (MiB) |",
             "|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        peak = row["peak_bytes"]
        lines.append(f"| {name} | {row['per_second']:,.1f} | {row['x_lstm']:.2f} | "
                     f"{row['median_call_seconds'] * 1e3:,.1f} | "
                     f"{'-' if peak is None else f'{peak / 2**20:,.1f}'} |")
    lines += ["", "Cells at this width: " + "; ".join(
        f"{n}: {d}" for n, d in report["cells"].items()) + "."]
    return "\n".join(lines) + "\n"


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
    lstm = rows[LSTM].median_call_seconds
    report = {
        "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}",
        "load": load, "command": " ".join(["python -m benchmarks.matrix_cells",
                                            *(sys.argv[1:] if argv is None else argv)]),
        "workload": {"batch": w.batch, "time": w.time, "hidden": w.hidden, "inputs": w.inputs},
        "cells": describe(w, args.cells), "skipped": skipped,
        "rows": {name: {"per_second": r.per_second, "median_call_seconds": r.median_call_seconds,
                        "x_lstm": lstm / r.median_call_seconds, "peak_bytes": r.peak_bytes,
                        "calls": r.calls} for name, r in rows.items()},
    }
    write_report(args.out, report, markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
