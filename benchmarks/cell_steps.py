"""What the per-family cell benchmarks (`benchmarks.matrix_cells`, `benchmarks.xlstm_cells`)
share: one layer of a cell with a linear head as a train step, and their report and table.

Each benchmark times its cells against seqnets' LSTM of the same width, interleaved in
one run (`benchmarks.harness.measure`); the report's ``x_lstm`` is the LSTM's step time
over each competitor's.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

import seqnets as sn
from benchmarks.harness import Row, Workload, classifier_data
from benchmarks.runners import JaxStep
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy

NUM_CLASSES = 10
LSTM = "lstm"  # every ratio divides by the LSTM's step time


def classifier_step(w: Workload, cell: sn.Cell, mode: str = "auto") -> JaxStep:
    """One layer of ``cell`` and a linear head on the last output, Adam 1e-3, on
    ``classifier_data(w)``; the runner owns its state."""
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


def report(module: str, argv: Sequence[str] | None, w: Workload, rows: Mapping[str, Row],
           skipped: list, load: list[float], **extra) -> dict:
    """The JSON-ready report of one run: machine, load, command, workload and each row."""
    lstm = rows[LSTM].median_call_seconds
    return {
        "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}",
        "load": load, "command": " ".join([f"python -m {module}",
                                            *(sys.argv[1:] if argv is None else argv)]),
        "workload": {"batch": w.batch, "time": w.time, "hidden": w.hidden, "inputs": w.inputs},
        **extra, "skipped": skipped,
        "rows": {name: {"per_second": r.per_second, "median_call_seconds": r.median_call_seconds,
                        "x_lstm": lstm / r.median_call_seconds, "peak_bytes": r.peak_bytes,
                        "calls": r.calls} for name, r in rows.items()},
    }


def markdown(report: dict, shape_note: str = "", footer: str = "") -> str:
    """The report as a Markdown paragraph and table (``shape_note`` follows the shape)."""
    w = report["workload"]
    lines = [f"Measured {report['date']} on {report['machine']}, jax {report['jax']}; load "
             f"average {report['load'][0]:.2f} at the start, {report['load'][1]:.2f} at the "
             f"end. Command: `{report['command']}`.", "",
             f"Train step (forward, backward, Adam) of one layer, B {w['batch']}, T "
             f"{w['time']:,}, width {w['hidden']}, inputs {w['inputs']}{shape_note}; x LSTM is "
             "the LSTM's step time over this one's.", "",
             "| competitor | examples/s | x LSTM | ms per step | peak memory (MiB) |",
             "|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        peak = row["peak_bytes"]
        lines.append(f"| {name} | {row['per_second']:,.1f} | {row['x_lstm']:.2f} | "
                     f"{row['median_call_seconds'] * 1e3:,.1f} | "
                     f"{'-' if peak is None else f'{peak / 2**20:,.1f}'} |")
    if footer:
        lines += ["", footer]
    return "\n".join(lines) + "\n"
