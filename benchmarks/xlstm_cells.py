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
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import seqnets as sn
from benchmarks.harness import Competitor, Workload, classifier_data, measure
from benchmarks.runners import JaxStep
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy

RESULTS = Path(__file__).resolve().parent / "results" / "xlstm"
# id: (constructor, mode)
COMPETITORS = {
    "slstm": (sn.slstm, "sequential"),
    "mlstm chunked": (sn.mlstm, "chunked"),
    "mlstm sequential": (sn.mlstm, "sequential"),
    "lstm": (sn.lstm, "auto"),
}
LSTM = "lstm"  # every ratio divides by the LSTM's step time
NUM_CLASSES = 10


def train_step(w: Workload, name: str) -> JaxStep:
    """One layer of competitor ``name`` and a linear head on the last output, Adam 1e-3, on
    ``classifier_data(w)``; the runner owns its state."""
    make, mode = COMPETITORS[name]
    model = sn.stack(make(w.hidden))
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


def competitors(names: Sequence[str]) -> list[Competitor]:
    return [Competitor(n, n, lambda w, n=n: train_step(w, n)) for n in names]


def markdown(report: dict) -> str:
    w = report["workload"]
    lines = [f"Measured {report['date']} on {report['machine']}, jax {report['jax']}; load "
             f"average {report['load'][0]:.2f} at the start, {report['load'][1]:.2f} at the "
             f"end. Command: `{report['command']}`.", "",
             f"Train step (forward, backward, Adam) of one layer, B {w['batch']}, T "
             f"{w['time']:,}, width {w['hidden']}, inputs {w['inputs']}, 4 heads; x LSTM is "
             "the LSTM's step time over this one's.", "",
             "| competitor | examples/s | x LSTM | ms per step | peak memory (MiB) |",
             "|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        peak = row["peak_bytes"]
        lines.append(f"| {name} | {row['per_second']:,.1f} | {row['x_lstm']:.2f} | "
                     f"{row['median_call_seconds'] * 1e3:,.1f} | "
                     f"{'-' if peak is None else f'{peak / 2**20:,.1f}'} |")
    return "\n".join(lines) + "\n"


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
    names = list(dict.fromkeys([*args.competitors, LSTM]))  # the LSTM is the unit
    w = Workload("xlstm_cells", batch=args.batch, time=args.time, inputs=args.hidden,
                 hidden=args.hidden)
    load = [os.getloadavg()[0]]
    rows, skipped = measure(w, competitors(names), args.rounds, args.calls, memory=True)
    load.append(os.getloadavg()[0])
    lstm = rows[LSTM].median_call_seconds
    report = {
        "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}",
        "load": load, "command": " ".join(["python -m benchmarks.xlstm_cells",
                                            *(sys.argv[1:] if argv is None else argv)]),
        "workload": {"batch": w.batch, "time": w.time, "hidden": w.hidden, "inputs": w.inputs},
        "skipped": skipped,
        "rows": {name: {"per_second": r.per_second, "median_call_seconds": r.median_call_seconds,
                        "x_lstm": lstm / r.median_call_seconds, "peak_bytes": r.peak_bytes,
                        "calls": r.calls} for name, r in rows.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cells.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "cells.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
