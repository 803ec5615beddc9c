"""The benchmark harness: workloads, competitor records, goals, interleaved timing, reports.

A **workload** is one train-step shape (`Workload`). A **competitor** is a record
``Competitor(id, label, build)``: ``build(workload)`` returns a fresh `Runner` that owns
its own training state, and each call of the runner trains on its data once (one step,
or one epoch of windows) and returns when the work is done. A **goal** names its
competitors by their stable ids, so a renamed label never drops a goal; `check_goals`
raises when a goal names an id that no registry holds.

Timing: `build` makes every competitor's runner and calls it twice untimed (compilation
and warm-up), then `time_rounds` runs ``rounds`` rounds. Each round starts with a
different competitor, after a pause that lets the previous one's worker threads go idle,
and times ``steps`` calls of each; a figure is ``units / median(call seconds)``.

The cost slope of a workload measured at several lengths T is the least-squares fit
``seconds(T) = intercept + slope * T`` over the medians.

This module imports NumPy only, so that a subprocess measuring PyTorch's memory does not
load JAX.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclasses.dataclass(frozen=True)
class Workload:
    """One train-step shape.

    Attributes:
      key: the workload's letter ("A", "B", ...); several shapes may share it (D runs at
        several lengths ``time``).
      batch, time, inputs, hidden: the input is ``(batch, time, inputs)``, one recurrent
        layer of width ``hidden``.
      unit: what one call trains on, per second ("examples/s", "windows/s").
      windows: windows per call (TBPTT workloads); a call then trains on
        ``(batch, windows * time)`` streams, one update per window.
    """

    key: str
    batch: int
    time: int
    inputs: int
    hidden: int
    unit: str = "examples/s"
    windows: int = 1

    @property
    def units_per_call(self) -> int:
        """Examples (or windows) one call trains on."""
        return self.windows if self.unit == "windows/s" else self.batch

    @property
    def label(self) -> str:
        return f"{self.key} (T = {self.time:,})"


class Runner(Protocol):
    """What a competitor's ``build`` returns: a callable that owns its training state.

    A runner may also measure its memory: a ``peak_memory()`` method, as in
    `MeasuresMemory`. `time_rounds(..., memory=True)` asks the runners that have one
    (`peak_memory`); a row without one says so.
    """

    def __call__(self) -> None:
        """One timed call: trains once on its data and returns when the work is done."""

    def first_batch(self) -> tuple[np.ndarray, ...]:
        """The first batch (or window) it trains on, ``(x, y)``, read back from what it feeds
        its step; competitors of one workload train on equal arrays."""


class MeasuresMemory(Runner, Protocol):
    """A `Runner` that also reports the peak memory of one call."""

    def peak_memory(self) -> tuple[int | None, str]:
        """``(bytes or None, how it was measured or why not)`` of one call."""


def peak_memory(runner: Runner) -> tuple[int | None, str]:
    """``runner.peak_memory()``, or ``(None, why not)`` for a runner that has none."""
    measure_memory = getattr(runner, "peak_memory", None)
    if measure_memory is None:
        return None, f"{type(runner).__name__} does not measure its memory"
    return measure_memory()


@dataclasses.dataclass(frozen=True)
class Competitor:
    """One implementation of a workload.

    Attributes:
      id: stable identifier, unique within the workload; goals refer to it.
      label: display name for the tables.
      build: ``workload -> Runner``, a fresh runner with its own state.
      requires: a module the competitor needs (``"torch"``), or None.
    """

    id: str
    label: str
    build: Callable[[Workload], Runner]
    requires: str | None = None

    def missing(self) -> str | None:
        """Why it cannot run here (its module is not importable), or None."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"{self.requires} is not importable"
        return None


@dataclasses.dataclass(frozen=True)
class Goal:
    """``ours`` trains at least ``least`` times as fast as ``theirs`` on ``workload``.

    ``time`` picks one length of a workload measured at several (None: its only one).
    """

    workload: str
    ours: str
    theirs: str
    least: float
    time: int | None = None


def check_goals(goals: Iterable[Goal], registries: Mapping[str, Sequence[Competitor]]) -> None:
    """Raises ValueError when a goal names a workload or competitor id that is not registered."""
    for goal in goals:
        if goal.workload not in registries:
            raise ValueError(f"goal {goal} names workload {goal.workload!r}; registered "
                             f"workloads: {sorted(registries)}.")
        ids = [c.id for c in registries[goal.workload]]
        for name in (goal.ours, goal.theirs):
            if name not in ids:
                raise ValueError(f"goal {goal} names competitor {name!r}, which workload "
                                 f"{goal.workload} does not register; its ids: {ids}.")


def check_registry(competitors: Sequence[Competitor]) -> None:
    """Raises ValueError when two competitors share an id."""
    ids = [c.id for c in competitors]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"competitor ids must be unique within a workload; repeated: {duplicates}.")


def classifier_data(w: Workload, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs ``(batch, time, inputs)`` float32 and labels ``(batch,)`` int32 in [0, 10)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(w.batch, w.time, w.inputs)).astype(np.float32)
    return x, rng.integers(0, 10, w.batch).astype(np.int32)


def echo_data(w: Workload, seed: int = 0, echo_step: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The echo task's bits, `seqnets.data.echo_streams`: ``(batch, windows * time)`` int32 each."""
    from seqnets.data import echo_streams

    return echo_streams(seed, series_length=w.batch * w.windows * w.time, batch_size=w.batch,
                        echo_step=echo_step)


@dataclasses.dataclass
class Row:
    """One competitor's figures on one workload."""

    label: str
    per_second: float
    median_call_seconds: float
    first_call_seconds: float
    calls: int
    peak_bytes: int | None = None
    memory_note: str = ""


@dataclasses.dataclass
class Built:
    """The runners of one workload, ready to time."""

    runners: dict[str, Runner]
    first_call_seconds: dict[str, float]
    skipped: dict[str, str]  # id -> why it could not run here
    labels: dict[str, str]


def build(w: Workload, competitors: Sequence[Competitor], warmup: int = 2) -> Built:
    """Builds every competitor that can run here and calls it ``warmup`` times, untimed.

    The first call compiles (JAX); its seconds are kept as ``first_call_seconds``.
    """
    check_registry(competitors)
    runners, first, skipped = {}, {}, {}
    for c in competitors:
        reason = c.missing()
        if reason:
            skipped[c.id] = reason
            continue
        runner = c.build(w)
        start = time.perf_counter()
        runner()
        first[c.id] = time.perf_counter() - start
        for _ in range(warmup - 1):
            runner()
        runners[c.id] = runner
    return Built(runners, first, skipped, {c.id: c.label for c in competitors})


def time_rounds(w: Workload, built: Built, rounds: int, steps: int, *, pause: float = 0.2,
                memory: bool = False) -> dict[str, Row]:
    """Times the built runners, interleaved; rows by competitor id, in registry order.

    Args:
      w: the workload.
      built: what `build` returned.
      rounds: interleaved rounds; each starts with a different competitor.
      steps: timed calls per competitor and round.
      pause: seconds of sleep before each competitor's calls in a round.
      memory: also ask each runner for its peak memory (`peak_memory`).
    """
    times: dict[str, list[float]] = {i: [] for i in built.runners}
    ids = list(built.runners)
    for r in range(rounds):
        for i in ids[r % len(ids):] + ids[: r % len(ids)]:
            runner = built.runners[i]
            time.sleep(pause)
            for _ in range(steps):
                start = time.perf_counter()
                runner()
                times[i].append(time.perf_counter() - start)
    rows = {}
    for i, runner in built.runners.items():
        median = statistics.median(times[i])
        rows[i] = Row(built.labels[i], w.units_per_call / median, median,
                      built.first_call_seconds[i], len(times[i]))
        if memory:
            rows[i].peak_bytes, rows[i].memory_note = peak_memory(runner)
    return rows


def measure(w: Workload, competitors: Sequence[Competitor], rounds: int, steps: int, *,
            pause: float = 0.2, memory: bool = False) -> tuple[dict[str, Row], dict[str, str]]:
    """`build` then `time_rounds`: ``(rows by id, {id: why it was skipped})``."""
    built = build(w, competitors)
    return time_rounds(w, built, rounds, steps, pause=pause, memory=memory), built.skipped


def cost_slope(times: Sequence[int], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``seconds`` against ``times`` (seconds per step)."""
    if len(times) < 2:
        raise ValueError(f"a slope needs at least two lengths; got {list(times)}.")
    slope, intercept = np.polyfit(np.asarray(times, float), np.asarray(seconds, float), 1)
    return float(slope), float(intercept)


def matmul_ceiling(n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of a large float32 matmul through XLA: the machine's practical ceiling."""
    import jax

    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def write_report(out: Path, report: dict, markdown: str) -> None:
    """Writes ``out/latest.json`` (the report) and ``out/latest.md`` (its tables)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "latest.md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")
