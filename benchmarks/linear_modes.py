"""Train steps of linear recurrent cells in each evaluation mode against seqnets' LSTM.

    python -m benchmarks.linear_modes                       # T = 784, batch 64, hidden 128
    python -m benchmarks.linear_modes --times 16 64 256 784 4096 --cells min_gru

A train step is forward, backward and an Adam update of one layer (1 input per step)
and a linear head on the last output, 10 classes, on the default device (one CPU device).
All competitors of one T run interleaved in one process: each round starts with a
different one, after a short pause, and each figure is the median over every timed call.
Prints a markdown table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import seqnets as sn
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy

CELLS = {"min_gru": sn.min_gru, "lru": sn.lru, "min_lstm": sn.min_lstm, "rg_lru": sn.rg_lru}
MODES = ("sequential", "chunked", "parallel")


def train_step(cell: sn.Cell, batch: int, steps: int, hidden: int, **scan_options):
    """A closure running one jitted train step (blocking) on fixed random data."""
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": cell.init(k1, 1), "w": 0.1 * jax.random.normal(k2, (hidden, 10)),
              "b": jnp.zeros(10)}

    def loss_fn(params, data, key):
        x, y = data
        _, ys = sn.scan(cell, params["rnn"], x, **scan_options)
        return softmax_cross_entropy(ys[:, -1] @ params["w"] + params["b"], y), {}

    optimizer = optax.adam(1e-3)
    holder = [create_train_state(params, optimizer, jax.random.key(1))]
    rng = np.random.default_rng(0)
    data = (jnp.asarray(rng.normal(size=(batch, steps, 1)), jnp.float32),
            jnp.asarray(rng.integers(0, 10, batch), jnp.int32))
    step = make_train_step(loss_fn, optimizer)

    def run():
        holder[0], metrics = step(holder[0], data)
        metrics["loss"].block_until_ready()

    return run


def competitors(steps: int, cells: list[str], batch: int, hidden: int) -> dict:
    table = {}
    for name in cells:
        for mode in MODES:
            table[f"{name} {mode}"] = lambda n=name, m=mode: train_step(
                CELLS[n](hidden), batch, steps, hidden, mode=m)
    table["lstm (seqnets)"] = lambda: train_step(sn.lstm(hidden), batch, steps, hidden)
    return table


def measure(table: dict, rounds: int, calls: int) -> dict[str, float]:
    built = {}
    for name, make in table.items():
        run = make()
        run()  # compile
        built[name] = run
    times: dict[str, list[float]] = {name: [] for name in built}
    names = list(built)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(0.2)
            for _ in range(calls):
                start = time.perf_counter()
                built[name]()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[784])
    parser.add_argument("--cells", nargs="+", default=["min_gru", "lru"], choices=sorted(CELLS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per round")
    args = parser.parse_args()
    print(f"batch {args.batch}, hidden {args.hidden}, {args.rounds} rounds x {args.calls} calls; "
          f"jax {jax.__version__}, {jax.devices()[0].device_kind}\n")
    print("| T | competitor | ex/s | x seqnets LSTM |\n|---|---|---|---|")
    for steps in args.times:
        seconds = measure(competitors(steps, args.cells, args.batch, args.hidden),
                          args.rounds, args.calls)
        lstm = seconds["lstm (seqnets)"]
        for name, s in seconds.items():
            print(f"| {steps} | {name} | {args.batch / s:,.0f} | {lstm / s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
