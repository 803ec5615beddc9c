"""The mLSTM kernel's train step: seqnets' chunked mode against its sequential mode and
NX-AI's ``mlstm_kernels`` native JAX chunkwise kernel.

    python -m benchmarks.xlstm_kernels                  # B 4, T 2,048, 4 heads, K = V = 64
    python -m benchmarks.xlstm_kernels --crossover      # sequential vs chunked over T ("auto")
    python -m benchmarks.xlstm_kernels --tiny --out /tmp/x   # the test's sizes

A train step is the gradient of a scalar loss (``sum(h * r)``, ``r`` fixed and random)
with respect to every input ``q, k, v, i, f``, jitted, on the default device; each
competitor gets the inputs in its own layout (``mlstm_kernels``: ``(B, H, T, K)``), made
before timing. Before timing, every competitor's outputs and gradients are checked
against seqnets' sequential mode. Competitors run interleaved in one process
(`benchmarks.harness`); figures are steps per second from the median call.

The optional competitor: ``pip install --no-deps mlstm-kernels==2.0.6 einops`` (its
package ``__init__`` files import Triton, so its JAX natives are loaded without them).
Results: ``benchmarks/results/xlstm/latest.{json,md}`` and ``crossover.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from seqnets.ops import mlstm

HEADS, KEY, VALUE = 4, 64, 64
FULL = harness.Workload("mLSTM", batch=4, time=2048, inputs=KEY, hidden=VALUE, unit="steps/s")
TINY = dataclasses.replace(FULL, batch=2, time=40, inputs=8, hidden=8)
TINY_HEADS = 2
CHUNK = 64
NX = "mlstm_kernels"
INSTALL_NX = "pip install --no-deps mlstm-kernels==2.0.6 einops"


def goals() -> list[harness.Goal]:
    return [harness.Goal("mLSTM", "seqnets_chunked", "mlstm_kernels_native", 1.5),
            harness.Goal("mLSTM", "seqnets_chunked", "seqnets_sequential", 3.0)]


def data(w: harness.Workload, heads: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``q, k (B, T, H, K)``, ``v (B, T, H, V)``, ``i, f (B, T, H)`` and ``r (B, T, H, V)``."""
    rng = np.random.default_rng(seed)
    shapes = [(w.batch, w.time, heads, w.inputs)] * 2 + [(w.batch, w.time, heads, w.hidden)]
    shapes += [(w.batch, w.time, heads)] * 2 + [(w.batch, w.time, heads, w.hidden)]
    return tuple(rng.normal(size=s).astype(np.float32) for s in shapes)


def load_nx_chunkwise():
    """``mlstm_kernels.jax.chunkwise.native``'s autograd kernel, imported without Triton:
    its parent packages are registered empty, so their ``__init__`` files never run."""
    root = pathlib.Path(importlib.util.find_spec(NX).submodule_search_locations[0])
    for name in (NX, f"{NX}.jax", f"{NX}.jax.chunkwise"):
        if name not in sys.modules:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{NX}.jax.chunkwise.native.fwbw").mlstm_chunkwise__native_autograd


def seqnets_forward(mode: str, chunk_size: int = CHUNK):
    def forward(q, k, v, i, f):
        return mlstm(q, k, v, i, f, mode=mode, chunk_size=chunk_size)[0]
    return forward


def nx_forward(chunk_size: int = CHUNK):
    kernel = load_nx_chunkwise()

    def forward(q, k, v, i, f):  # (B, H, T, K) in, (B, H, T, V) out
        return kernel(q, k, v, i, f, chunk_size=chunk_size)
    return forward


def to_nx(x: np.ndarray) -> np.ndarray:
    """``(B, T, H, ...)`` -> ``(B, H, T, ...)``."""
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))


class Step:
    """A competitor's jitted train step on its own copy of the data (`harness.Runner`)."""

    def __init__(self, forward, arrays: tuple[np.ndarray, ...], nx_layout: bool):
        self.nx_layout = nx_layout
        self.arrays = tuple(jnp.asarray(to_nx(a) if nx_layout else a) for a in arrays)

        def loss(q, k, v, i, f, r):
            h = forward(q, k, v, i, f)
            return jnp.sum(h * r), h
        self.step = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))

    def __call__(self) -> None:
        jax.block_until_ready(self.step(*self.arrays))

    def outputs(self) -> tuple[np.ndarray, ...]:
        """``h`` and the gradients, in seqnets' layout."""
        grads, h = self.step(*self.arrays)
        return tuple(np.swapaxes(np.asarray(x), 1, 2) if self.nx_layout else np.asarray(x)
                     for x in (h, *grads))

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.arrays)


def registry(heads: int, chunk_size: int = CHUNK) -> list[harness.Competitor]:
    def ours(mode):
        return lambda w: Step(seqnets_forward(mode, chunk_size), data(w, heads)[:6], False)
    return [
        harness.Competitor("seqnets_chunked", "seqnets chunked", ours("chunked")),
        harness.Competitor("seqnets_sequential", "seqnets sequential", ours("sequential")),
        harness.Competitor("mlstm_kernels_native", "mlstm_kernels native JAX chunkwise",
                           lambda w: Step(nx_forward(chunk_size), data(w, heads), True),
                           requires=NX),
    ]


def check_agreement(built: harness.Built, reference: str = "seqnets_sequential",
                    rtol: float = 1e-3) -> dict[str, list[float]]:
    """Max |difference| / max |reference| of each competitor's ``h`` and gradients
    against ``reference``; raises if one exceeds ``rtol`` (the tests check the kernels to
    float32 rounding; this only guards the benchmark against comparing unequal work)."""
    expected = built.runners[reference].outputs()
    found = {}
    for name, runner in built.runners.items():
        got = runner.outputs()
        found[name] = [float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                       for a, b in zip(got, expected, strict=True)]
        if max(found[name]) > rtol:
            raise AssertionError(f"{name} disagrees with {reference}: relative errors of h, dq, dk, "
                                 f"dv, di, df = {found[name]}")
    return found


def run(w: harness.Workload, heads: int, rounds: int, steps: int, chunk_size: int = CHUNK) -> dict:
    competitors = registry(heads, chunk_size)
    built = harness.build(w, competitors)
    for name, why in built.skipped.items():
        print(f"skipping {name}: {why}; install it with `{INSTALL_NX}`")
    agreement = check_agreement(built)
    rows = harness.time_rounds(w, built, rounds, steps)
    results = []
    for goal in goals():
        ours, theirs = rows.get(goal.ours), rows.get(goal.theirs)
        ratio = None if ours is None or theirs is None else ours.per_second / theirs.per_second
        results.append({**dataclasses.asdict(goal), "ratio": ratio,
                        "met": None if ratio is None else ratio >= goal.least})
    return {"workload": {**dataclasses.asdict(w), "heads": heads, "chunk_size": chunk_size},
            "rows": {i: dataclasses.asdict(r) for i, r in rows.items()},
            "skipped": built.skipped, "agreement": agreement, "goals": results,
            "load_average": os.getloadavg(), "devices": str(jax.devices())}


def markdown(report: dict) -> str:
    w = report["workload"]
    lines = [f"mLSTM kernel train step, B {w['batch']}, T {w['time']:,}, {w['heads']} heads, "
             f"K {w['inputs']}, V {w['hidden']}, chunk {w['chunk_size']} "
             f"(load average {report['load_average'][0]:.1f} at the end)", "",
             "| competitor | steps/s | median ms | first call s |", "|---|---:|---:|---:|"]
    for row in report["rows"].values():
        lines.append(f"| {row['label']} | {row['per_second']:.2f} | "
                     f"{1000 * row['median_call_seconds']:.1f} | {row['first_call_seconds']:.1f} |")
    for name, why in report["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | |")
    lines += ["", "| goal | ratio | met |", "|---|---:|---|"]
    for g in report["goals"]:
        ratio = "n/a" if g["ratio"] is None else f"{g['ratio']:.2f}x"
        lines.append(f"| {g['ours']} >= {g['least']}x {g['theirs']} | {ratio} | {g['met']} |")
    return "\n".join(lines) + "\n"


def crossover(times: list[int], heads: int, rounds: int, steps: int) -> str:
    """Sequential against chunked train steps over T (where "auto" switches), as markdown."""
    lines = [f"mLSTM train step, B {FULL.batch}, {heads} heads, K {FULL.inputs}, V {FULL.hidden}",
             "", "| T | sequential ms | chunked ms | chunked speed-up |", "|---:|---:|---:|---:|"]
    for t in times:
        w = dataclasses.replace(FULL, time=t)
        rows = harness.time_rounds(w, harness.build(w, registry(heads)[:2]), rounds, steps)
        seq, chunk = (rows[i].median_call_seconds for i in ("seqnets_sequential", "seqnets_chunked"))
        lines.append(f"| {t} | {1000 * seq:.2f} | {1000 * chunk:.2f} | {seq / chunk:.2f}x |")
        print(lines[-1], flush=True)
    lines.append(f"\n(load average {os.getloadavg()[0]:.1f} at the end)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the tests')")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed calls a competitor and round")
    parser.add_argument("--chunk-size", type=int, default=CHUNK)
    parser.add_argument("--crossover", action="store_true", help="time sequential vs chunked over T")
    parser.add_argument("--times", type=int, nargs="+", default=[1, 2, 4, 16, 64, 256])
    parser.add_argument("--out", default="benchmarks/results/xlstm", help="results folder")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.crossover:
        (out / "crossover.md").write_text(crossover(args.times, HEADS, args.rounds, args.steps))
        return None
    w, heads = (TINY, TINY_HEADS) if args.tiny else (FULL, HEADS)
    report = run(w, heads, args.rounds, args.steps, min(args.chunk_size, w.time))
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "latest.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
