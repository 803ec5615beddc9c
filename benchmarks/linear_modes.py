"""Train steps of linear recurrent cells in each evaluation mode against seqnets' LSTM.

    python -m benchmarks.linear_modes                       # T = 784, batch 64, hidden 128
    python -m benchmarks.linear_modes --times 16 64 256 784 4096 --cells min_gru

A train step is forward, backward and an Adam update of one layer (1 input per step)
and a linear head on the last output, 10 classes, on the default device (one CPU device):
`benchmarks.jax_competitors.seqnets_classifier`, the model of workload D of
`benchmarks.rnn_training`. All competitors of one T run interleaved in one process
(`benchmarks.harness.time_rounds`): each round starts with a different one, after a
short pause, and each figure is the median over every timed call. Prints a markdown
table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

import jax

import seqnets as sn
from benchmarks.harness import Competitor, Workload, measure
from benchmarks.jax_competitors import seqnets_classifier

CELLS = {"min_gru": sn.min_gru, "lru": sn.lru, "min_lstm": sn.min_lstm, "rg_lru": sn.rg_lru}
MODES = ("sequential", "chunked", "parallel")
LSTM = "lstm (seqnets)"  # the reference every ratio divides by


def competitors(cells: Sequence[str]) -> list[Competitor]:
    """Each cell in each mode, then seqnets' LSTM; ids are the table's labels."""
    found = [Competitor(f"{name} {mode}", f"{name} {mode}",
                        partial(seqnets_classifier, cell=CELLS[name], mode=mode))
             for name in cells for mode in MODES]
    return [*found, Competitor(LSTM, LSTM, seqnets_classifier)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[784])
    parser.add_argument("--cells", nargs="+", default=["min_gru", "lru"], choices=sorted(CELLS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per round")
    args = parser.parse_args(argv)
    print(f"batch {args.batch}, hidden {args.hidden}, {args.rounds} rounds x {args.calls} calls; "
          f"jax {jax.__version__}, {jax.devices()[0].device_kind}\n")
    print("| T | competitor | ex/s | x seqnets LSTM |\n|---|---|---|---|")
    for steps in args.times:
        w = Workload("T", batch=args.batch, time=steps, inputs=1, hidden=args.hidden)
        rows, _ = measure(w, competitors(args.cells), args.rounds, args.calls)
        lstm = rows[LSTM].median_call_seconds
        for name, row in rows.items():
            print(f"| {steps} | {name} | {row.per_second:,.0f} | "
                  f"{lstm / row.median_call_seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
