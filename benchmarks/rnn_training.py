"""Train-step throughput of seqnets against Flax and PyTorch, measured interleaved in one run.

    python -m benchmarks.rnn_training                 # workloads A, B, C
    python -m benchmarks.rnn_training --workloads A C --rounds 5
    python -m benchmarks.rnn_training --workloads D --d-times 784 4096

Workloads (a train step = forward + backward + optimizer update):

* **A, row-MNIST:** batch 128, 28 steps, 28 inputs, LSTM 128, linear head on the last
  output to 10 classes, softmax cross-entropy, Adam (1.72 GFLOP a step).
* **B, pixel-MNIST:** batch 64, 784 steps, 1 input, LSTM 128, same head.
* **C, echo windows:** the echo experiment's model (Elman tanh 4 units, a 2-class head on
  every step, carry in and out, Adagrad 0.3) on `seqnets.data.echo_streams` bits, batch 5,
  64 windows of 15 steps per call; windows per second.
* **D, long sequences:** one train step at T = 784, 4,096 and 16,384, batch 64, 1 input,
  one layer of width 128, same head: seqnets' LSTM, Flax ``nn.RNN(OptimizedLSTMCell)``,
  PyTorch ``nn.LSTM``, and every scan mode of the linear cells (`LINEAR_CELLS`) when
  seqnets has them. Also reports the peak memory of a step and the slope of its cost
  against T.

Competitors are `benchmarks.harness.Competitor` records in one registry per workload
(`registry`); goals (`goals`) name them by id. Every competitor runs in the same process;
the rounds interleave them, and each figure is the median over at least 20 timed calls.
PyTorch is optional (``pip install torch==2.13.0``, the CPU build); without it, its rows
and goals say "not measured". Results go to ``benchmarks/results/latest.json`` and
``latest.md``, which docs/benchmarks.md includes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import seqnets as sn
from benchmarks import torch_competitors
from benchmarks.harness import (
    Competitor,
    Goal,
    Workload,
    check_goals,
    classifier_data,
    cost_slope,
    echo_data,
    measure,
)
from experiments import echo, models
from seqnets import parallel
from seqnets.cpu import tune_allocator, use_cores_as_devices
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows

RESULTS = Path(__file__).resolve().parent / "results"
MIN_TIMED_CALLS = 20  # per competitor and workload: each figure is a median over at least this many
PAUSE_SECONDS = 0.2
NOISY_LOAD = 1.0  # load average per core above which a run's goal verdicts are marked noisy
NUM_CLASSES = 10
D_TIMES = (784, 4096, 16384)
# The linear cells of issue 12 and the scan modes workload D times for each; a cell joins
# the benchmark as soon as seqnets has it. "auto" is the library's default mode.
LINEAR_CELLS = ("min_gru", "lru")
LINEAR_MODES = ("auto", "sequential", "chunked", "parallel")
DEFAULT_LINEAR_CELL = "min_gru"


def workloads(d_times: Sequence[int] = D_TIMES) -> dict[str, tuple[Workload, ...]]:
    """Each workload's shapes; D runs at every length in ``d_times``."""
    return {
        "A": (Workload("A", batch=128, time=28, inputs=28, hidden=128),),
        "B": (Workload("B", batch=64, time=784, inputs=1, hidden=128),),
        "C": (Workload("C", batch=5, time=15, inputs=1, hidden=4, unit="windows/s", windows=64),),
        "D": tuple(Workload("D", batch=64, time=t, inputs=1, hidden=128) for t in d_times),
    }


def lstm_flops(w: Workload) -> float:
    """Matmul FLOPs of an LSTM classifier's train step: the forward, and twice that backward."""
    forward = (2 * w.batch * w.time * (w.inputs + w.hidden) * 4 * w.hidden
               + 2 * w.batch * w.hidden * NUM_CLASSES)
    return 3 * forward


# --- runners: each owns its state ---------------------------------------------------------


class JaxStep:
    """A jitted ``(state, batch) -> (state, metrics)`` train step on one fixed batch."""

    def __init__(self, step: Callable, state, batch):
        self.step, self.state, self.batch = step, state, batch

    def __call__(self) -> None:
        self.state, metrics = self.step(self.state, self.batch)
        metrics["loss"].block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.batch)

    def peak_memory(self) -> tuple[int | None, str]:
        analysis = self.step.lower(self.state, self.batch).compile().memory_analysis()
        if analysis is None:
            return None, "XLA gave no memory analysis on this backend"
        peak = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
        return peak, "XLA compiled memory analysis (arguments + outputs - aliased + temporaries)"


class JaxEpoch:
    """seqnets' fused TBPTT epoch: one compiled ``lax.scan`` over the windows."""

    def __init__(self, epoch: Callable, state, carry, windows):
        self.epoch, self.state, self.carry, self.windows = epoch, state, carry, windows

    def __call__(self) -> None:
        self.state, self.carry, metrics = self.epoch(self.state, self.carry, self.windows)
        metrics["loss"].block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a[0]) for a in self.windows)

    def peak_memory(self) -> tuple[int | None, str]:
        return None, "not measured for this workload"


class JaxWindowLoop:
    """One jitted ``(state, carry, window) -> (state, carry, metrics)`` call per window."""

    def __init__(self, step: Callable, state, carry, windows: list):
        self.step, self.state, self.carry, self.windows = step, state, carry, windows

    def __call__(self) -> None:
        for window in self.windows:
            self.state, self.carry, metrics = self.step(self.state, self.carry, window)
        metrics["loss"].block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.windows[0])

    def peak_memory(self) -> tuple[int | None, str]:
        return None, "not measured for this workload"


# --- JAX competitors ----------------------------------------------------------------------


def seqnets_classifier(w: Workload, cell: Callable[[int], sn.Cell] = sn.lstm, devices: int = 1,
                       **scan_options) -> JaxStep:
    """`experiments.models`' stack and head on ``classifier_data``, Adam 1e-3.

    ``devices > 1``: the shard_map data-parallel step, a share of the batch per device.
    ``scan_options`` go to ``Stack.apply`` (``hoist``, ``mode``, ...).
    """
    model = sn.stack(cell(w.hidden))
    params = models.init_params(model, jax.random.key(0), w.inputs, NUM_CLASSES)

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x, **scan_options)
        return softmax_cross_entropy(models.head(params, sn.final_outputs(ys)), y), {}

    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    batch = tuple(map(jnp.asarray, classifier_data(w)))
    if devices == 1:
        step = make_train_step(loss_fn, optimizer)
    else:
        mesh = parallel.data_mesh(devices)
        state, batch = parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh)
        step = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)
    return JaxStep(step, state, batch)


def flax_classifier(w: Workload, cell_cls: type[nn.RNNCellBase]) -> JaxStep:
    """``nn.RNN(cell_cls)`` and an ``nn.Dense`` head on ``classifier_data``, Adam 1e-3."""
    rnn = nn.RNN(cell_cls(features=w.hidden), return_carry=True)
    head = nn.Dense(NUM_CLASSES)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": rnn.init(k1, jnp.zeros((w.batch, w.time, w.inputs))),
              "head": head.init(k2, jnp.zeros((1, w.hidden)))}

    def loss_fn(params, batch, key):
        x, y = batch
        (_, h), _ = rnn.apply(params["rnn"], x)
        return softmax_cross_entropy(head.apply(params["head"], h), y), {}

    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    return JaxStep(make_train_step(loss_fn, optimizer), state,
                   tuple(map(jnp.asarray, classifier_data(w))))


def _echo_loss(model: sn.Stack, **scan_options):
    """The TBPTT loss of the echo model: ``(params, carry, (x, y), key) -> (loss, (carry, {}))``."""

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, ys = model.apply(params["rnn"], x[..., None].astype(jnp.float32), carry=carry,
                                **scan_options)
        return softmax_cross_entropy(models.head(params, ys), y), (carry, {})

    return loss_fn


def seqnets_echo(w: Workload, fused: bool = True, **scan_options) -> JaxEpoch | JaxWindowLoop:
    """The echo experiment's model (`experiments.echo.make_model`) trained by TBPTT, Adagrad 0.3.

    ``fused``: one `make_epoch_step` call over the windows; else one `make_window_step`
    call per window.
    """
    model = echo.make_model(echo.Config(hidden_size=w.hidden))
    optimizer = optax.adagrad(0.3)
    state = create_train_state(echo.init_params(model, jax.random.key(0)), optimizer,
                               jax.random.key(1))
    windows = split_windows(tuple(map(jnp.asarray, echo_data(w))), w.time)
    loss_fn = _echo_loss(model, **scan_options)
    zero = model.initial_carry(w.batch)
    if fused:
        return JaxEpoch(make_epoch_step(loss_fn, optimizer), state, zero, windows)
    per_window = [jax.tree.map(lambda a, k=k: a[k], windows) for k in range(w.windows)]
    return JaxWindowLoop(make_window_step(loss_fn, optimizer), state, zero, per_window)


class FlaxEchoLoop:
    """``nn.RNN(SimpleCell)`` and an ``nn.Dense`` head per step, one jitted call per window."""

    def __init__(self, w: Workload):
        rnn = nn.RNN(nn.SimpleCell(features=w.hidden), return_carry=True)
        head = nn.Dense(2)
        k1, k2 = jax.random.split(jax.random.key(0))
        self.params = {"rnn": rnn.init(k1, jnp.zeros((w.batch, w.time, 1))),
                       "head": head.init(k2, jnp.zeros((1, w.hidden)))}
        optimizer = optax.adagrad(0.3)
        self.opt_state = optimizer.init(self.params)
        self.carry = jnp.zeros((w.batch, w.hidden))

        @jax.jit
        def step(params, opt_state, carry, x, y):
            def loss(params):
                new_carry, ys = rnn.apply(params["rnn"], x[..., None].astype(jnp.float32),
                                          initial_carry=carry)
                return softmax_cross_entropy(head.apply(params["head"], ys), y), new_carry

            (value, new_carry), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, new_carry, value

        self.step = step
        x, y = echo_data(w)
        self.windows = [(jnp.asarray(x[:, k * w.time:(k + 1) * w.time]),
                         jnp.asarray(y[:, k * w.time:(k + 1) * w.time])) for k in range(w.windows)]

    def __call__(self) -> None:
        for xb, yb in self.windows:
            self.params, self.opt_state, self.carry, value = self.step(
                self.params, self.opt_state, self.carry, xb, yb)
        value.block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.windows[0])

    def peak_memory(self) -> tuple[int | None, str]:
        return None, "not measured for this workload"


# --- registries and goals -----------------------------------------------------------------


def _best_devices() -> int:
    return jax.local_device_count()


def linear_competitors() -> list[Competitor]:
    """Every scan mode of every linear cell seqnets has (none before issue 12 lands), and
    the default cell's best settings: mode auto, the batch split over one device per core."""
    found = [Competitor(f"{cell}_{mode}", f"seqnets {cell} mode={mode}",
                        partial(seqnets_classifier, cell=getattr(sn, cell), mode=mode))
             for cell in LINEAR_CELLS if hasattr(sn, cell) for mode in LINEAR_MODES]
    if hasattr(sn, DEFAULT_LINEAR_CELL):
        cell = getattr(sn, DEFAULT_LINEAR_CELL)
        found.append(Competitor(f"{DEFAULT_LINEAR_CELL}_best",
                                f"seqnets {DEFAULT_LINEAR_CELL} mode=auto, one device per core",
                                lambda w: seqnets_classifier(w, cell=cell, devices=_best_devices())))
    return found


# Workloads A and B: the same competitors at two shapes.
CLASSIFIERS = (
    Competitor("seqnets_default", "seqnets, default settings", seqnets_classifier),
    Competitor("seqnets_best", "seqnets, best settings",
               lambda w: seqnets_classifier(w, devices=_best_devices())),
    Competitor("seqnets_hoist", "seqnets lstm hoist=True", partial(seqnets_classifier, hoist=True)),
    Competitor("flax_optimized_lstm", "flax nn.RNN(OptimizedLSTMCell)",
               partial(flax_classifier, cell_cls=nn.OptimizedLSTMCell)),
    Competitor("flax_lstm", "flax nn.RNN(LSTMCell)", partial(flax_classifier, cell_cls=nn.LSTMCell)),
    Competitor("pytorch", "PyTorch nn.LSTM", torch_competitors.LSTMClassifier, "torch"),
)
ECHO = (
    Competitor("seqnets_default", "seqnets, default settings", seqnets_echo),
    Competitor("seqnets_best", "seqnets, best settings", partial(seqnets_echo, unroll=True)),
    Competitor("seqnets_window_loop", "seqnets per-window jit", partial(seqnets_echo, fused=False)),
    Competitor("flax_window_loop", "flax nn.RNN(SimpleCell) per-window jit", FlaxEchoLoop),
    Competitor("pytorch_window_loop", "PyTorch nn.RNN per-window loop",
               torch_competitors.RNNWindowLoop, "torch"),
)
LONG_SEQUENCES = (
    Competitor("seqnets_lstm", "seqnets lstm", seqnets_classifier),
    Competitor("flax_optimized_lstm", "flax nn.RNN(OptimizedLSTMCell)",
               partial(flax_classifier, cell_cls=nn.OptimizedLSTMCell)),
    Competitor("pytorch", "PyTorch nn.LSTM", torch_competitors.LSTMClassifier, "torch"),
)


def registry(workload: str) -> tuple[Competitor, ...]:
    """The competitors of ``workload`` ("A" to "D"), in the order the tables list them."""
    registries = {"A": CLASSIFIERS, "B": CLASSIFIERS, "C": ECHO,
                  "D": (*LONG_SEQUENCES, *linear_competitors())}
    if workload not in registries:
        raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(registries)}.")
    return registries[workload]


# The ids the ratio columns divide by, and what seqnets' settings are, per workload.
REFERENCES = {"A": ("seqnets_default", "seqnets_best"), "B": ("seqnets_default", "seqnets_best"),
              "C": ("seqnets_default", "seqnets_best"), "D": ("seqnets_lstm",)}
SETTINGS = {
    "A": "Default settings: one device, make_train_step, scan defaults. Best settings: data "
         "parallel over one CPU device per core (shard_map step).",
    "C": "Default settings: fused epoch (make_epoch_step: lax.scan over windows), scan defaults. "
         "Best settings: fused epoch with the window's 15 steps unrolled (unroll=True).",
    "D": "seqnets on one device with scan defaults; linear cells in each scan mode; the "
         "default linear cell also data parallel over one CPU device per core (best).",
}
SETTINGS["B"] = SETTINGS["A"]


def goals() -> list[Goal]:
    """The benchmark issues' goals, by competitor id."""
    found = [
        Goal("A", "seqnets_best", "pytorch", 1.25),
        Goal("B", "seqnets_best", "pytorch", 1.2),
        Goal("C", "seqnets_default", "pytorch_window_loop", 20.0),
        Goal("A", "seqnets_default", "flax_optimized_lstm", 1.0),
        Goal("A", "seqnets_default", "flax_lstm", 1.0),
        Goal("B", "seqnets_default", "flax_optimized_lstm", 1.0),
        Goal("B", "seqnets_default", "flax_lstm", 1.0),
        Goal("C", "seqnets_default", "flax_window_loop", 1.0),
    ]
    if hasattr(sn, DEFAULT_LINEAR_CELL):  # issue 12: the default linear cell, 10x nn.LSTM
        found += [Goal("D", f"{DEFAULT_LINEAR_CELL}_{settings}", "pytorch", 10.0, time=784)
                  for settings in ("auto", "best")]
    return found


# --- the run and its report ---------------------------------------------------------------


def run_shape(w: Workload, rounds: int, steps: int, pause: float = PAUSE_SECONDS,
              only: Sequence[str] = ()) -> dict:
    """Measures one shape of workload ``w.key``: its JSON-ready record.

    ``only``: the competitor ids to run (default: all of the workload's registry); the
    workload's reference ids (`REFERENCES`, the ratio columns' divisors) always run.
    """
    workload = w.key
    keep = set(only) | set(REFERENCES[workload])
    competitors = [c for c in registry(workload) if not only or c.id in keep]
    rows, skipped = measure(w, competitors, rounds, steps, pause=pause, memory=workload == "D")
    gflops = ({i: lstm_flops(w) * r.per_second / w.batch / 1e9 for i, r in rows.items()}
              if workload in ("A", "B") else {})
    return {"workload": workload, **dataclasses.asdict(w),
            "rows": {i: dataclasses.asdict(r) for i, r in rows.items()},
            "gflops": gflops, "skipped": skipped}


def slopes(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per competitor of a workload run at several lengths: cost slope and intercept."""
    if len(records) < 2:
        return {}
    found = {}
    for i in records[0]["rows"]:
        if all(i in r["rows"] for r in records):
            slope, intercept = cost_slope([r["time"] for r in records],
                                          [r["rows"][i]["median_call_seconds"] for r in records])
            found[i] = {"seconds_per_step": slope, "intercept_seconds": intercept}
    return found


def goal_results(report: dict) -> list[dict]:
    """Each goal of a workload this run measured: its ratio, or why it was not measured."""
    results = []
    for goal in goals():
        runs = [r for r in report["runs"] if r["workload"] == goal.workload]
        if not runs:
            continue
        if goal.time is not None:
            runs = [r for r in runs if r["time"] == goal.time]
        result = {**dataclasses.asdict(goal), "ratio": None, "met": None, "why": ""}
        if not runs:
            result["why"] = f"T = {goal.time} was not in this run"
        else:
            run = runs[0]
            missing = [run["skipped"][i] for i in (goal.ours, goal.theirs) if i in run["skipped"]]
            missing += [f"{i} was not in this run (--only)" for i in (goal.ours, goal.theirs)
                        if i not in run["rows"] and i not in run["skipped"]]
            if missing:
                result["why"] = "; ".join(missing)
            else:
                ratio = run["rows"][goal.ours]["per_second"] / run["rows"][goal.theirs]["per_second"]
                result.update(ratio=ratio, met=ratio >= goal.least)
        results.append(result)
    return results


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f}"


def run_table(run: dict) -> list[str]:
    """The markdown table of one measured shape."""
    refs = REFERENCES[run["workload"]]
    memory = run["workload"] == "D"
    ref_rows = [run["rows"][i] for i in refs if i in run["rows"]]
    head = (f"| implementation | {run['unit']} | "
            + "".join(f"{r['label']} / this | " for r in ref_rows)
            + ("peak memory (MiB) | " if memory else "")
            + ("matmul GFLOP/s | " if run["gflops"] else "")
            + "first call (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, row in run["rows"].items():
        cells = [row["label"], f"{row['per_second']:,.0f}",
                 *(f"{r['per_second'] / row['per_second']:.2f}x" for r in ref_rows)]
        if memory:
            cells.append(_mib(row["peak_bytes"]))
        if run["gflops"]:
            cells.append(f"{run['gflops'][i]:.0f}")
        cells.append(f"{row['first_call_seconds']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    for i, why in run["skipped"].items():
        lines.append(f"| {i} | not measured: {why} |" + " |" * (head.count("|") - 3))
    return lines


def to_markdown(report: dict) -> str:
    lines = [f"Measured {report['date']} on {report['machine']}, jax {report['jax']}"
             + (f", torch {report['torch']} ({report['torch_threads']} threads)"
                if report["torch"] else ", without PyTorch")
             + f"; float32 matmul ceiling {report['ceiling_gflops']:.0f} GFLOP/s; glibc "
             f"allocator tuned: {report['allocator_tuned']}; {report['devices']} CPU devices; "
             f"load average {report['load_start']:.2f} at the start, {report['load_end']:.2f} "
             f"at the end. Command: `{report['command']}`.", ""]
    for run in report["runs"]:
        lines += [f"**{run['workload']}** ({run['unit']}; batch {run['batch']}, {run['time']:,} "
                  f"steps, hidden {run['hidden']}; at least "
                  f"{report.get('min_calls', MIN_TIMED_CALLS)} timed calls each). "
                  f"{SETTINGS[run['workload']]}", "", *run_table(run), ""]
    for workload, per_id in report["slopes"].items():
        runs = [r for r in report["runs"] if r["workload"] == workload]
        times = [r["time"] for r in runs]
        lines += [f"**{workload}: cost against T** (least-squares fit of the median step time "
                  f"over T = {', '.join(f'{t:,}' for t in times)}; peak memory from the row's "
                  "method: XLA's compiled memory analysis for JAX, a fresh process's max RSS "
                  "growth for PyTorch)", "",
                  "| implementation | ms per 1,000 steps | "
                  + " | ".join(f"ex/s T={t:,}" for t in times) + " | "
                  + " | ".join(f"MiB T={t:,}" for t in times) + " |",
                  "|---|---|" + "---|" * (2 * len(times))]
        for i, fit in per_id.items():
            rows = [r["rows"][i] for r in runs]
            lines.append(f"| {rows[0]['label']} | {1e6 * fit['seconds_per_step']:,.1f} | "
                         + " | ".join(f"{r['per_second']:,.1f}" for r in rows) + " | "
                         + " | ".join(_mib(r["peak_bytes"]) for r in rows) + " |")
        lines.append("")
    results = report["goals"]
    noisy = max(report["load_start"], report["load_end"]) > NOISY_LOAD * (os.cpu_count() or 1)
    if results:
        lines += ["**Goals** (ratios from this run)"
                  + (f"; **the machine was shared (load average above {NOISY_LOAD:g} per core): "
                     "no verdict below is evidence**" if noisy else ""), "",
                  "| workload | ratio (ids) | measured | goal | |", "|---|---|---|---|---|"]
        for g in results:
            where = g["workload"] + (f" T={g['time']:,}" if g["time"] else "")
            measured = "" if g["ratio"] is None else f"{g['ratio']:.2f}x"
            verdict = ("met" if g["met"] else "not met") if g["ratio"] is not None \
                else f"not measured: {g['why']}"
            verdict += " (noisy run)" if noisy and g["ratio"] is not None else ""
            lines.append(f"| {where} | {g['ours']} / {g['theirs']} | {measured} | "
                         f">= {g['least']:g}x | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def matmul_ceiling(n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of a large float32 matmul through XLA: the machine's practical ceiling."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["A", "B", "C"], choices=list("ABCD"))
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=6,
                        help="timed calls per round; at least --min-calls in all, "
                             "whatever --rounds")
    parser.add_argument("--min-calls", type=int, default=MIN_TIMED_CALLS,
                        help="the fewest timed calls per competitor and shape; fewer than "
                             f"{MIN_TIMED_CALLS} only for steps that take seconds (D at 16,384)")
    parser.add_argument("--d-times", nargs="+", type=int, default=list(D_TIMES),
                        help="the sequence lengths of workload D")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=[], metavar="ID",
                        help="run only these competitor ids (e.g. seqnets_lstm pytorch min_gru_auto)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.min_calls < 1:
        parser.error(f"--min-calls must be at least 1; got {args.min_calls}")
    check_goals(goals(), {k: registry(k) for k in "ABCD"})
    known = {c.id for k in args.workloads for c in registry(k)}
    if unknown := sorted(set(args.only) - known):
        parser.error(f"--only: unknown competitor ids {unknown}; the workloads' ids: {sorted(known)}")
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
        "jax": jax.__version__, "torch": torch_version, "torch_threads": args.torch_threads,
        "allocator_tuned": ALLOCATOR_TUNED, "devices": jax.local_device_count(),
        "load_start": os.getloadavg()[0],
        "command": "python -m benchmarks.rnn_training " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "out" and v != []),
        "ceiling_gflops": matmul_ceiling(), "runs": [], "slopes": {},
    }
    report["min_calls"] = args.min_calls
    steps = max(args.steps, -(-args.min_calls // args.rounds))
    shapes = workloads(args.d_times)
    for workload, shape in ((k, w) for k in args.workloads for w in shapes[k]):
        run = run_shape(shape, args.rounds, steps, only=args.only)
        report["runs"].append(run)
        if found := slopes([r for r in report["runs"] if r["workload"] == workload]):
            report["slopes"][workload] = found
        print("\n".join(run_table(run)) + "\n", flush=True)
        # Written after every shape, so that a run stopped early keeps what it measured.
        report["load_end"] = os.getloadavg()[0]
        report["goals"] = goal_results(report)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "latest.md").write_text(to_markdown(report) + "\n")
    print(f"wrote {args.out / 'latest.json'} and latest.md")
    return report


ALLOCATOR_TUNED = False  # set by __main__ (seqnets.cpu.tune_allocator)

if __name__ == "__main__":
    ALLOCATOR_TUNED = tune_allocator()
    use_cores_as_devices()  # the best settings spread the batch over the cores
    main()
