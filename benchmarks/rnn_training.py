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
  PyTorch ``nn.LSTM``, and every scan mode of the linear cells (`LINEAR_CELLS`). Also
  reports the peak memory of a step and the slope of its cost against T.

Competitors are `benchmarks.harness.Competitor` records in one registry per workload;
goals name them by id (both in `benchmarks.rnn_training_registry`, the competitors in
`benchmarks.jax_competitors` and `benchmarks.torch_competitors`, the report's tables in
`benchmarks.rnn_training_report`). Every competitor runs in the same process; the
rounds interleave them, and each figure is the median over at least 20 timed calls.
PyTorch is optional (``pip install torch==2.13.0``, the CPU build); without it, its rows
and goals say "not measured". Results go to ``benchmarks/results/latest.json`` and
``latest.md``, which docs/benchmarks.md includes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import jax

from benchmarks.harness import Workload, check_goals, matmul_ceiling, measure, write_report
from benchmarks.rnn_training_registry import (
    D_TIMES,
    MIN_TIMED_CALLS,
    REFERENCES,
    goals,
    lstm_flops,
    registry,
    workloads,
)
from benchmarks.rnn_training_report import goal_results, run_table, slopes, to_markdown
from seqnets.cpu import tune_allocator, use_cores_as_devices

RESULTS = Path(__file__).resolve().parent / "results"
PAUSE_SECONDS = 0.2


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



def main(argv: Sequence[str] | None = None, *, allocator_tuned: bool = False) -> dict:
    """Parses ``argv``, measures the chosen workloads, writes ``latest.json`` and ``latest.md``.

    ``allocator_tuned``: whether the caller ran `seqnets.cpu.tune_allocator` (the report
    says so). Returns the report.
    """
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
        "allocator_tuned": allocator_tuned, "devices": jax.local_device_count(),
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
        write_report(args.out, report, to_markdown(report))
    print(f"wrote {args.out / 'latest.json'} and latest.md")
    return report


if __name__ == "__main__":
    tuned = tune_allocator()  # before JAX allocates: glibc then keeps freed memory for the next step
    use_cores_as_devices()  # the best settings spread the batch over the cores
    main(allocator_tuned=tuned)
