"""The report of `benchmarks.rnn_training`: slopes, goal verdicts and the markdown tables.

A report is the JSON-ready dict that ``benchmarks/results/latest.json`` holds: the run's
conditions (date, machine, versions, load average), ``runs`` (one record per measured
shape, from `benchmarks.rnn_training.run_shape`), ``slopes`` (per workload measured at
several lengths) and ``goals`` (`goal_results`). `to_markdown` renders it as
``latest.md``, which docs/benchmarks.md includes.
"""

from __future__ import annotations

import dataclasses
import os

from benchmarks.harness import cost_slope
from benchmarks.rnn_training_registry import MIN_TIMED_CALLS, REFERENCES, SETTINGS, goals

NOISY_LOAD = 1.0  # load average per core above which a run's goal verdicts are marked noisy


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


def slope_table(report: dict, workload: str) -> list[str]:
    """The cost-against-T table of a workload measured at several lengths."""
    runs = [r for r in report["runs"] if r["workload"] == workload]
    times = [r["time"] for r in runs]
    lines = [f"**{workload}: cost against T** (least-squares fit of the median step time "
             f"over T = {', '.join(f'{t:,}' for t in times)}; peak memory from the row's "
             "method: XLA's compiled memory analysis for JAX, a fresh process's max RSS "
             "growth for PyTorch)", "",
             "| implementation | ms per 1,000 steps | "
             + " | ".join(f"ex/s T={t:,}" for t in times) + " | "
             + " | ".join(f"MiB T={t:,}" for t in times) + " |",
             "|---|---|" + "---|" * (2 * len(times))]
    for i, fit in report["slopes"][workload].items():
        rows = [r["rows"][i] for r in runs]
        lines.append(f"| {rows[0]['label']} | {1e6 * fit['seconds_per_step']:,.1f} | "
                     + " | ".join(f"{r['per_second']:,.1f}" for r in rows) + " | "
                     + " | ".join(_mib(r["peak_bytes"]) for r in rows) + " |")
    return [*lines, ""]


def goal_table(report: dict) -> list[str]:
    """The goals' verdicts; every verdict is marked noisy when the machine was shared."""
    results = report["goals"]
    if not results:
        return []
    noisy = max(report["load_start"], report["load_end"]) > NOISY_LOAD * (os.cpu_count() or 1)
    lines = ["**Goals** (ratios from this run)"
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
    return [*lines, ""]


def to_markdown(report: dict) -> str:
    """``latest.md``: the run's conditions, a table per shape, the slopes and the goals."""
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
    for workload in report["slopes"]:
        lines += slope_table(report, workload)
    lines += goal_table(report)
    return "\n".join(lines)
