"""Train steps of the matrix-state kernels: the gradients of sum(o^2) w.r.t. q, k, v, beta
(delta rule) and g, at B 4, 2 heads, per T and K = V; interleaved, ratios from one run.

    python -m benchmarks.matrix_kernels                 # the full table (tens of minutes)
    python -m benchmarks.matrix_kernels --times 512 --dims 16 --memory-times 256 --rounds 1

Competitors, all on the same inputs (their outputs are compared before timing):
* delta rule: seqnets chunked, seqnets sequential, and memax's algorithm: an associative
  scan (`memax.equinox.scans.semigroup_scan` with `GDNSemigroup`) over
  ``M_t = exp(g_t)(I - beta_t k_t k_t^T)``, ``X_t = beta_t k_t v_t^T``. memax is optional:
  ``pip install "memax[equinox]"``; without it that competitor is skipped, with a line.
* GLA with a log-decay per key (``gla``) and per head (``gla_head``): seqnets chunked,
  sequential and parallel.

Also: the cost slope against T (`benchmarks.harness.cost_slope`), XLA's peak temporary
memory of the same steps (``compiled.memory_analysis()``) at ``--memory-times``, and the
share of the float32 matmul ceiling (measured in this run) that the chunked delta step
reaches, from XLA's ``cost_analysis()`` FLOPs. Writes ``benchmarks/results/matrix/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from seqnets.ops import gated_delta_rule, gated_linear_attention

RESULTS = Path(__file__).resolve().parent / "results" / "matrix"
HAVE_MEMAX = importlib.util.find_spec("memax") is not None
GOALS = (("chunked", "memax", 20.0), ("chunked", "sequential", 3.0))


def inputs(B: int, T: int, H: int, D: int, seed: int = 0) -> tuple[jax.Array, ...]:
    """q, k (L2-normalised), v ``(B, T, H, D)``; beta ``(B, T, H)``; g per head and per key."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(B, T, H, D)).astype(np.float32) for _ in range(3))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    beta = 1 / (1 + np.exp(-rng.normal(size=(B, T, H))))
    g = np.log(1 / (1 + np.exp(-(rng.normal(size=(B, T, H)) + 3))))
    g_key = np.log(1 / (1 + np.exp(-(rng.normal(size=(B, T, H, D)) + 3))))
    return tuple(jnp.asarray(x, jnp.float32) for x in (q, k, v, beta, g, g_key))


def memax_delta_rule(q, k, v, beta, g):
    """The gated delta rule as memax runs it: an associative scan of (M, X) pairs."""
    from memax.equinox.scans import semigroup_scan
    from memax.equinox.semigroups.gdn import GDNSemigroup

    K = q.shape[-1]
    eye = jnp.eye(K, dtype=q.dtype)

    def one(q, k, v, beta, g):  # (T, K) ... for one batch row and head
        M = jnp.exp(g)[:, None, None] * (eye - beta[:, None, None] * k[:, :, None] * k[:, None, :])
        X = beta[:, None, None] * k[:, :, None] * v[:, None, :]
        _, S = semigroup_scan(GDNSemigroup(K), (eye, jnp.zeros((K, v.shape[-1]))), (M, X))
        return jnp.einsum("tkv,tk->tv", S, q * K ** -0.5)

    heads = jax.vmap(jax.vmap(one, in_axes=(1, 1, 1, 1, 1), out_axes=1))
    return heads(q, k, v, beta, g)


def outputs_fn(family: str, name: str):
    """``(q, k, v, beta, g, g_key) -> o`` of one competitor."""
    if name == "memax":
        return lambda q, k, v, beta, g, g_key: memax_delta_rule(q, k, v, beta, g)
    if family == "delta":
        return lambda q, k, v, beta, g, g_key: gated_delta_rule(q, k, v, beta, g, mode=name)[0]
    if family == "gla_head":
        return lambda q, k, v, beta, g, g_key: gated_linear_attention(q, k, v, g, mode=name)[0]
    return lambda q, k, v, beta, g, g_key: gated_linear_attention(q, k, v, g_key, mode=name)[0]


def train_step(family: str, name: str):
    """The jitted gradient of ``sum(o^2)`` w.r.t. q, k, v, beta, g (GLA: q, k, v, g)."""
    out = outputs_fn(family, name)
    argnums = {"delta": (0, 1, 2, 3, 4), "gla": (0, 1, 2, 5), "gla_head": (0, 1, 2, 4)}[family]
    return jax.jit(jax.grad(lambda *x: jnp.sum(out(*x) ** 2), argnums=argnums))


@dataclasses.dataclass
class Runner:
    """A harness runner: one call is one train step on fixed inputs."""

    step: object
    args: tuple

    def __call__(self) -> None:
        jax.block_until_ready(self.step(*self.args))

    def first_batch(self):
        return self.args[:2]

    def peak_memory(self):
        m = self.step.lower(*self.args).compile().memory_analysis()
        return m.temp_size_in_bytes, "XLA temp_size_in_bytes"


def competitors(family: str, steps: int, memax_upto: int, parallel_upto: int) -> list[str]:
    names = ["chunked", "sequential"]
    if family == "delta" and HAVE_MEMAX and steps <= memax_upto:
        names.append("memax")
    if family.startswith("gla") and steps <= parallel_upto:
        names.append("parallel")
    return names


def check_same_outputs(family: str, names: list[str], args: tuple) -> dict[str, float]:
    """Max |o - o_sequential| / max |o_sequential| of each competitor; raises past 1e-4."""
    ref = jax.jit(outputs_fn(family, "sequential"))(*args)
    errors = {}
    for name in names:
        o = jax.jit(outputs_fn(family, name))(*args)
        errors[name] = float(jnp.max(jnp.abs(o - ref)) / jnp.max(jnp.abs(ref)))
        if not errors[name] <= 1e-4:
            raise AssertionError(f"{family} {name} outputs differ from sequential: {errors[name]}")
    return errors



def measure_shape(family, B, T, H, D, rounds, steps, memax_upto, parallel_upto):
    names = competitors(family, T, memax_upto, parallel_upto)
    if family == "delta" and not HAVE_MEMAX:
        print('memax is not installed (pip install "memax[equinox]"): skipping it')
    elif family == "delta" and not competitors(family, T, memax_upto, 0).count("memax"):
        print(f"memax skipped at T = {T}, K = {D} (--memax-upto, --memax-dims: seconds a call)")
    x = inputs(B, T, H, D)
    errors = check_same_outputs(family, names, x)
    w = harness.Workload(key=family, batch=B, time=T, inputs=D, hidden=D)
    comps = [harness.Competitor(n, n, lambda _w, n=n: Runner(train_step(family, n), x))
             for n in names]
    rows, _ = harness.measure(w, comps, rounds, steps)
    record = {"family": family, "batch": B, "time": T, "heads": H, "dim": D,
              "output_error_vs_sequential": errors,
              "rows": {i: dataclasses.asdict(r) for i, r in rows.items()}}
    if family == "delta":
        cost = train_step(family, "chunked").lower(*x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        record["chunked_flops"] = float(cost.get("flops", 0.0))
    print(family, T, D, {i: f"{r.median_call_seconds * 1e3:.1f} ms" for i, r in rows.items()},
          flush=True)
    return record


def peak_memory(family: str, names: list[str], B, T, H, D) -> dict[str, int]:
    x = inputs(B, T, H, D)
    return {n: Runner(train_step(family, n), x).peak_memory()[0] for n in names}


def markdown(report: dict) -> str:
    lines = [f"Measured {report['date']} on {report['machine']}, jax {report['jax']}; load "
             f"average {report['load'][0]:.2f} at the start, {report['load'][1]:.2f} at the "
             f"end; float32 matmul ceiling {report['ceiling_gflops']:.1f} GFLOP/s. Command: "
             f"`{report['command']}`.", ""]
    for family, title in (("delta", "Gated delta rule"), ("gla", "GLA, a decay per key"),
                          ("gla_head", "GLA, a decay per head (Mamba-2, RetNet)")):
        runs = [r for r in report["runs"] if r["family"] == family]
        if not runs:
            continue
        lines += [f"**{title}**: ms per train step (B {runs[0]['batch']}, {runs[0]['heads']} "
                  "heads), and ratios chunked / this.", "",
                  "| T | K = V | competitor | ms | chunked is x faster |", "|---|---|---|---|---|"]
        for r in runs:
            ours = r["rows"]["chunked"]["median_call_seconds"]
            for name, row in r["rows"].items():
                s = row["median_call_seconds"]
                lines.append(f"| {r['time']:,} | {r['dim']} | {name} | {s * 1e3:,.1f} | "
                             f"{s / ours:.2f}x |")
        lines.append("")
    for key, fit in report["slopes"].items():
        lines.append(f"- cost slope {key}: {fit['seconds_per_step'] * 1e6:.1f} us per step "
                     f"(intercept {fit['intercept'] * 1e3:.1f} ms)")
    for key, share in report["ceiling_share"].items():
        lines.append(f"- chunked delta step {key}: {share['gflops']:.1f} GFLOP/s, "
                     f"{100 * share['share']:.0f} % of the ceiling")
    if report["memory"]:
        lines += ["", "**Peak temporary memory** (XLA, MiB) of the delta rule train step:", "",
                  "| T | " + " | ".join(report["memory_names"]) + " |",
                  "|---|" + "---|" * len(report["memory_names"])]
        for T, m in report["memory"].items():
            lines.append(f"| {int(T):,} | " + " | ".join(
                f"{m[n] / 2**20:,.0f}" if n in m else "-" for n in report["memory_names"]) + " |")
    lines += ["", "**Goals** (main shape)", ""] + [f"- {g}" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--times", nargs="+", type=int, default=[512, 2048, 8192])
    parser.add_argument("--dims", nargs="+", type=int, default=[64, 128],
                        help="K = V; dims past the first run at the main T only")
    parser.add_argument("--main-time", type=int, default=2048)
    parser.add_argument("--memax-upto", type=int, default=2048,
                        help="longest T at which memax is timed (its calls take seconds)")
    parser.add_argument("--memax-dims", nargs="+", type=int, default=[64],
                        help="K = V at which memax is timed (O(T K^3) work a step)")
    parser.add_argument("--parallel-upto", type=int, default=2048)
    parser.add_argument("--memory-times", nargs="*", type=int,
                        default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--families", nargs="+", default=["delta", "gla", "gla_head"],
                        choices=["delta", "gla", "gla_head"])
    parser.add_argument("--ceiling-size", type=int, default=2048,
                        help="n of the n x n matmul that measures the ceiling")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    B, H = args.batch, args.heads
    report = {"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}",
              "load": [os.getloadavg()[0]], "command": "python -m benchmarks.matrix_kernels "
              + " ".join(argv if argv is not None else os.sys.argv[1:]),
              "ceiling_gflops": harness.matmul_ceiling(args.ceiling_size, reps=5),
              "runs": [], "slopes": {},
              "ceiling_share": {}, "memory": {}, "goals": []}
    shapes = [(T, args.dims[0]) for T in args.times]
    shapes += [(args.main_time, D) for D in args.dims[1:]]
    for family in args.families:
        for T, D in shapes:
            memax_upto = args.memax_upto if D in args.memax_dims else 0
            report["runs"].append(measure_shape(family, B, T, H, D, args.rounds,
                                                args.steps, memax_upto, args.parallel_upto))
        runs = [r for r in report["runs"] if r["family"] == family and r["dim"] == args.dims[0]]
        for name in runs[0]["rows"]:
            ts = [r["time"] for r in runs if name in r["rows"]]
            if len(ts) >= 2:
                slope, intercept = harness.cost_slope(
                    ts, [r["rows"][name]["median_call_seconds"] for r in runs if name in r["rows"]])
                report["slopes"][f"{family} {name} (K = {args.dims[0]})"] = {
                    "seconds_per_step": slope, "intercept": intercept}
    for r in report["runs"]:
        if r["family"] == "delta":
            gflops = r["chunked_flops"] / r["rows"]["chunked"]["median_call_seconds"] / 1e9
            report["ceiling_share"][f"T = {r['time']}, K = {r['dim']}"] = {
                "gflops": gflops, "share": gflops / report["ceiling_gflops"]}
        if r["family"] == "delta" and r["time"] == args.main_time and r["dim"] == args.dims[0]:
            for ours, theirs, least in GOALS:
                if theirs in r["rows"]:
                    ratio = (r["rows"][theirs]["median_call_seconds"]
                             / r["rows"][ours]["median_call_seconds"])
                    report["goals"].append(f"{ours} / {theirs}: {ratio:.2f}x (goal >= {least}x)")
                else:
                    report["goals"].append(f"{ours} / {theirs}: not measured ({theirs} absent)")
    if "delta" in args.families:
        names = ["chunked"] + (["memax"] if HAVE_MEMAX else [])
        report["memory_names"] = names
        for T in args.memory_times:
            report["memory"][T] = peak_memory("delta", names, B, T, H, args.dims[0])
            print("memory", T, {n: f"{b / 2**20:.0f} MiB" for n, b in report["memory"][T].items()},
                  flush=True)
    report["load"].append(os.getloadavg()[0])
    harness.write_report(args.out, report, markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
