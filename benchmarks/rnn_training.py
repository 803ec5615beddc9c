"""Train-step throughput of seqnets against Flax and PyTorch, measured interleaved in one run.

    python -m benchmarks.rnn_training                 # all workloads
    python -m benchmarks.rnn_training --workloads A C --rounds 5

Workloads (a train step = forward + backward + optimizer update):

* **A, row-MNIST:** batch 128, 28 steps, 28 inputs, LSTM 128, linear head on the last
  hidden state to 10 classes, softmax cross-entropy, Adam (1.72 GFLOP a step).
* **B, pixel-MNIST:** batch 64, 784 steps, 1 input, LSTM 128, same head.
* **C, echo window:** batch 5, 15 steps, Elman tanh 4 units, a 2-class head on every
  step, carry in and out, Adagrad; windows per second.

Competitors: seqnets with its default settings (one device) and its best settings (for A
and B, data parallel over one CPU device per core, which the script sets up at start;
for C, the window unrolled), Flax ``nn.RNN``, and PyTorch on the CPU. Every competitor
runs in the same process; the rounds interleave them, so that they share the machine's
noise, and each figure is the median over all timed steps. PyTorch is optional
(``pip install torch==2.13.0``, the CPU build); without it, its rows are left out.
Results go to ``benchmarks/results/latest.json`` and ``latest.md``, which ends with the
goals of the benchmark issue, met or not in this run; docs/benchmarks.md includes it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import seqnets as sn
from seqnets import parallel
from seqnets.cpu import tune_allocator, use_cores_as_devices
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = {
    "A": {"batch": 128, "time": 28, "inputs": 28, "hidden": 128, "unit": "examples/s"},
    "B": {"batch": 64, "time": 784, "inputs": 1, "hidden": 128, "unit": "examples/s"},
    "C": {"batch": 5, "time": 15, "inputs": 1, "hidden": 4, "unit": "windows/s"},
}
C_WINDOWS = 64  # windows per fused call in workload C
PAUSE_SECONDS = 0.2
ALLOCATOR_TUNED = False  # set by __main__ (seqnets.cpu.tune_allocator)
MIN_TIMED_CALLS = 20  # per competitor: each figure is a median over at least this many


def lstm_flops(batch: int, time: int, inputs: int, hidden: int) -> float:
    """Matmul FLOPs of a train step: forward, and twice that for the backward pass."""
    forward = 2 * batch * time * (inputs + hidden) * 4 * hidden + 2 * batch * hidden * 10
    return 3 * forward


# --- competitors: each returns (run_one_unit, units_per_call) ---------------------------


def seqnets_lstm(w: dict, dtype=jnp.float32, devices: int = 1, **scan_options):
    cell = sn.lstm(w["hidden"], dtype=dtype)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": cell.init(k1, w["inputs"]),
              "w": 0.1 * jax.random.normal(k2, (w["hidden"], 10)), "b": jnp.zeros(10)}

    def loss_fn(params, batch, key):
        x, y = batch
        carry, _ = sn.scan(cell, params["rnn"], x, **scan_options)
        logits = carry[1] @ params["w"] + params["b"]
        return softmax_cross_entropy(logits, y), {}

    return _jax_classifier(w, params, loss_fn, devices)


def flax_lstm(w: dict, cell_cls):
    model = nn.RNN(cell_cls(features=w["hidden"]), return_carry=True)
    head = nn.Dense(10)
    x0 = jnp.zeros((w["batch"], w["time"], w["inputs"]))
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": model.init(k1, x0), "head": head.init(k2, jnp.zeros((1, w["hidden"])))}

    def loss_fn(params, batch, key):
        x, y = batch
        (_, h), _ = model.apply(params["rnn"], x)
        return softmax_cross_entropy(head.apply(params["head"], h), y), {}

    return _jax_classifier(w, params, loss_fn)


def _jax_classifier(w: dict, params, loss_fn, devices: int = 1):
    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(rng.normal(size=(w["batch"], w["time"], w["inputs"])), jnp.float32),
             jnp.asarray(rng.integers(0, 10, w["batch"]), jnp.int32))
    if devices == 1:
        step = make_train_step(loss_fn, optimizer)
    else:  # data parallel: a share of the batch on each device (core)
        mesh = parallel.data_mesh(devices)
        state, batch = parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh)
        step = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)
    holder = [state]

    def run():
        holder[0], metrics = step(holder[0], batch)
        metrics["loss"].block_until_ready()

    return run, w["batch"]


def torch_lstm(w: dict):
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(w["inputs"], w["hidden"], batch_first=True)
    head = torch.nn.Linear(w["hidden"], 10)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(w["batch"], w["time"], w["inputs"])
    y = torch.randint(0, 10, (w["batch"],))

    def run():
        optimizer.zero_grad()
        _, (h, _) = lstm(x)
        loss = torch.nn.functional.cross_entropy(head(h[-1]), y)
        loss.backward()
        optimizer.step()

    return run, w["batch"]


def _echo_data(w: dict, windows: int):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (w["batch"], windows * w["time"])).astype(np.int32)
    y = np.roll(x, 3, axis=1)
    return x, y


def seqnets_echo(w: dict, fused: bool, **scan_options):
    model = sn.stack(sn.elman(w["hidden"]))
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": model.init(k1, 1), "w": 0.1 * jax.random.normal(k2, (w["hidden"], 2))}

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, ys = model.apply(params["rnn"], x[..., None].astype(jnp.float32), carry=carry,
                                **scan_options)
        return softmax_cross_entropy(ys @ params["w"], y), (carry, {})

    optimizer = optax.adagrad(0.3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    windows = split_windows(tuple(map(jnp.asarray, _echo_data(w, C_WINDOWS))), w["time"])
    zero = model.initial_carry(w["batch"])
    holder = [state, zero]
    if fused:
        epoch = make_epoch_step(loss_fn, optimizer)

        def run():
            holder[0], holder[1], m = epoch(holder[0], holder[1], windows)
            m["loss"].block_until_ready()

        return run, C_WINDOWS
    step = make_window_step(loss_fn, optimizer)
    per_window = [jax.tree.map(lambda a, k=k: a[k], windows) for k in range(C_WINDOWS)]

    def run():
        for batch in per_window:
            holder[0], holder[1], m = step(holder[0], holder[1], batch)
        m["loss"].block_until_ready()

    return run, C_WINDOWS


def flax_echo(w: dict):
    model = nn.RNN(nn.SimpleCell(features=w["hidden"]), return_carry=True)
    head = nn.Dense(2)
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jnp.zeros((w["batch"], w["time"], 1))
    params = {"rnn": model.init(k1, x0), "head": head.init(k2, jnp.zeros((1, w["hidden"])))}
    optimizer = optax.adagrad(0.3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, carry, x, y):
        def loss(params):
            new_carry, ys = model.apply(params["rnn"], x[..., None].astype(jnp.float32),
                                        initial_carry=carry)
            return softmax_cross_entropy(head.apply(params["head"], ys), y), new_carry

        (value, new_carry), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, new_carry, value

    x, y = _echo_data(w, C_WINDOWS)
    chunks = [(jnp.asarray(x[:, k * w["time"]:(k + 1) * w["time"]]),
               jnp.asarray(y[:, k * w["time"]:(k + 1) * w["time"]])) for k in range(C_WINDOWS)]
    holder = [params, opt_state, jnp.zeros((w["batch"], w["hidden"]))]

    def run():
        for xb, yb in chunks:
            holder[0], holder[1], holder[2], value = step(*holder, xb, yb)
        value.block_until_ready()

    return run, C_WINDOWS


def torch_echo(w: dict):
    import torch

    torch.manual_seed(0)
    rnn = torch.nn.RNN(1, w["hidden"], batch_first=True)
    head = torch.nn.Linear(w["hidden"], 2)
    optimizer = torch.optim.Adagrad([*rnn.parameters(), *head.parameters()], lr=0.3)
    x, y = _echo_data(w, C_WINDOWS)
    x = torch.from_numpy(x).float()[..., None]
    y = torch.from_numpy(y).long()
    holder = [torch.zeros(1, w["batch"], w["hidden"])]

    def run():
        for k in range(C_WINDOWS):
            sl = slice(k * w["time"], (k + 1) * w["time"])
            optimizer.zero_grad()
            ys, h = rnn(x[:, sl], holder[0])
            loss = torch.nn.functional.cross_entropy(head(ys).reshape(-1, 2), y[:, sl].reshape(-1))
            loss.backward()
            optimizer.step()
            holder[0] = h.detach()

    return run, C_WINDOWS


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


# --- the harness --------------------------------------------------------------------------


DEFAULT, BEST = "seqnets, default settings", "seqnets, best settings"
BEST_SETTINGS = {
    "A": "data parallel over one CPU device per core (shard_map step)",
    "B": "data parallel over one CPU device per core (shard_map step)",
    "C": "fused epoch with the window's 15 steps unrolled (unroll=True)",
}
DEFAULT_SETTINGS = {
    "A": "one device, make_train_step, scan defaults",
    "B": "one device, make_train_step, scan defaults",
    "C": "fused epoch (make_epoch_step: lax.scan over windows), scan defaults",
}
# Each goal: (workload, seqnets row, competitor row, least ratio), from the benchmark issue.
GOALS = [
    ("A", BEST, "PyTorch nn.LSTM", 1.25),
    ("B", BEST, "PyTorch nn.LSTM", 1.2),
    ("C", DEFAULT, "PyTorch nn.RNN per-window loop", 20.0),
    *((workload, DEFAULT, flax_row, 1.0) for workload, flax_row in [
        ("A", "flax nn.RNN(OptimizedLSTMCell)"), ("A", "flax nn.RNN(LSTMCell)"),
        ("B", "flax nn.RNN(OptimizedLSTMCell)"), ("B", "flax nn.RNN(LSTMCell)"),
        ("C", "flax nn.RNN(SimpleCell) per-window jit")]),
]


def competitors(workload: str, have_torch: bool) -> dict[str, Callable]:
    w = WORKLOADS[workload]
    if workload == "C":
        table = {
            DEFAULT: lambda: seqnets_echo(w, True),
            BEST: lambda: seqnets_echo(w, True, unroll=True),
            "seqnets per-window jit": lambda: seqnets_echo(w, False),
            "flax nn.RNN(SimpleCell) per-window jit": lambda: flax_echo(w),
        }
        if have_torch:
            table["PyTorch nn.RNN per-window loop"] = lambda: torch_echo(w)
        return table
    devices = jax.local_device_count()
    table = {
        DEFAULT: lambda: seqnets_lstm(w),
        BEST: lambda: seqnets_lstm(w, devices=devices),
        "seqnets lstm hoist=True": lambda: seqnets_lstm(w, hoist=True),
        "flax nn.RNN(OptimizedLSTMCell)": lambda: flax_lstm(w, nn.OptimizedLSTMCell),
        "flax nn.RNN(LSTMCell)": lambda: flax_lstm(w, nn.LSTMCell),
    }
    if have_torch:
        table["PyTorch nn.LSTM"] = lambda: torch_lstm(w)
    return table


def measure(workload: str, rounds: int, steps_per_round: int, have_torch: bool) -> dict:
    built, compile_seconds = {}, {}
    for name, make in competitors(workload, have_torch).items():
        run, units = make()
        start = time.perf_counter()
        run()  # compile (JAX) and warm up
        compile_seconds[name] = time.perf_counter() - start
        run()
        built[name] = (run, units)
    times: dict[str, list[float]] = {name: [] for name in built}
    names = list(built)
    for r in range(rounds):
        # Each round starts with a different competitor, after a pause that lets the
        # previous one's worker threads go idle: no competitor always follows another.
        for name in names[r % len(names):] + names[: r % len(names)]:
            run = built[name][0]
            time.sleep(PAUSE_SECONDS)
            for _ in range(steps_per_round):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    rows = {}
    for name, (_, units) in built.items():
        median = statistics.median(times[name])
        rows[name] = {"per_second": units / median, "median_call_seconds": median,
                      "first_call_seconds": compile_seconds[name], "calls": len(times[name])}
    return rows


def goal_lines(report: dict) -> list[str]:
    """One line per goal of the benchmark issue that this run's workloads cover."""
    lines = []
    for workload, ours, theirs, least in GOALS:
        rows = report["workloads"].get(workload, {})
        if ours not in rows or theirs not in rows:
            continue
        ratio = rows[ours]["per_second"] / rows[theirs]["per_second"]
        lines.append(f"| {workload} | {ours} / {theirs} | {ratio:.2f}x | >= {least:g}x | "
                     f"{'met' if ratio >= least else 'not met'} |")
    if lines:
        lines = ["**Goals** (ratios from this run)", "",
                 "| workload | ratio | measured | goal | |", "|---|---|---|---|---|", *lines, ""]
    return lines


def to_markdown(report: dict) -> str:
    lines = [f"Measured {report['date']} on {report['machine']}, jax {report['jax']}"
             + (f", torch {report['torch']} ({report['torch_threads']} threads)"
                if report["torch"] else ", without PyTorch")
             + f"; float32 matmul ceiling {report['ceiling_gflops']:.0f} GFLOP/s; glibc "
             f"allocator tuned: {report['allocator_tuned']}; {report['devices']} CPU devices. "
             f"Command: `{report['command']}`.", ""]
    for workload, rows in report["workloads"].items():
        w = WORKLOADS[workload]
        lines += [f"**{workload}** ({w['unit']}; batch {w['batch']}, {w['time']} steps, "
                  f"hidden {w['hidden']}). Default settings: {DEFAULT_SETTINGS[workload]}. "
                  f"Best settings: {BEST_SETTINGS[workload]}.", "",
                  f"| implementation | {w['unit']} | seqnets default / this "
                  "| seqnets best / this | share of ceiling | first call (s) |",
                  "|---|---|---|---|---|---|"]
        for name, row in rows.items():
            ratios = [rows[ours]["per_second"] / row["per_second"] for ours in (DEFAULT, BEST)]
            share = row.get("ceiling_share")
            lines.append(f"| {name} | {row['per_second']:,.0f} | {ratios[0]:.2f}x | "
                         f"{ratios[1]:.2f}x | "
                         f"{'' if share is None else f'{100 * share:.0f} %'} | "
                         f"{row['first_call_seconds']:.2f} |")
        lines.append("")
    return "\n".join(lines + goal_lines(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["A", "B", "C"], choices=WORKLOADS)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=6,
                        help="timed calls per round; at least 20 in all, whatever --rounds")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    ceiling = matmul_ceiling()
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
        "jax": jax.__version__, "torch": torch_version, "torch_threads": args.torch_threads,
        "ceiling_gflops": ceiling, "allocator_tuned": ALLOCATOR_TUNED,
        "devices": jax.local_device_count(),
        "command": "python -m benchmarks.rnn_training " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "out"),
        "workloads": {},
    }
    for workload in args.workloads:
        steps = max(args.steps, -(-MIN_TIMED_CALLS // args.rounds))
        rows = measure(workload, args.rounds, steps, torch_version is not None)
        w = WORKLOADS[workload]
        if workload != "C":
            flops = lstm_flops(w["batch"], w["time"], w["inputs"], w["hidden"])
            for row in rows.values():
                row["gflops"] = flops * row["per_second"] / w["batch"] / 1e9
                row["ceiling_share"] = row["gflops"] / ceiling
        report["workloads"][workload] = rows
        print(to_markdown({**report, "workloads": {workload: rows}}).split("\n\n", 1)[1],
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "latest.md").write_text(to_markdown(report) + "\n")
    print(f"wrote {args.out / 'latest.json'} and latest.md")


if __name__ == "__main__":
    ALLOCATOR_TUNED = tune_allocator()
    use_cores_as_devices()  # the best settings spread the batch over the cores
    main()
