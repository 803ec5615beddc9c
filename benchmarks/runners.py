"""Runners shared by the benchmarks: each owns its training state and trains once per call.

A runner is what a `benchmarks.harness.Competitor`'s ``build`` returns (the
`benchmarks.harness.Runner` protocol). The three here wrap seqnets' jitted steps:

* `JaxStep`: one ``(state, batch) -> (state, metrics)`` train step on a fixed batch;
* `JaxEpoch`: the fused TBPTT epoch, one compiled ``lax.scan`` over all the windows;
* `JaxWindowLoop`: one jitted ``(state, carry, window)`` call per window.

Their peak memory is XLA's plan for the compiled function one call runs
(`xla_peak_memory`): arguments + outputs - aliased (the donated state) + temporaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

XLA_MEMORY = "XLA compiled memory analysis (arguments + outputs - aliased + temporaries)"


def xla_peak_memory(jitted: Any, *args: Any) -> tuple[int | None, str]:
    """``(bytes or None, how)``: what XLA plans to hold at once for ``jitted(*args)``.

    ``jitted`` is a ``jax.jit``-wrapped function; it is lowered and compiled for ``args``'
    shapes (the compilation cache makes a second compile of the same program cheap).
    """
    analysis = jitted.lower(*args).compile().memory_analysis()
    if analysis is None:
        return None, "XLA gave no memory analysis on this backend"
    peak = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
    return peak, XLA_MEMORY


class JaxStep:
    """A jitted ``(state, batch) -> (state, metrics)`` train step on one fixed batch."""

    def __init__(self, step: Callable, state: Any, batch: tuple):
        self.step, self.state, self.batch = step, state, batch

    def __call__(self) -> None:
        self.state, metrics = self.step(self.state, self.batch)
        metrics["loss"].block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.batch)

    def peak_memory(self) -> tuple[int | None, str]:
        return xla_peak_memory(self.step, self.state, self.batch)


class JaxEpoch:
    """seqnets' fused TBPTT epoch: one compiled ``lax.scan`` over the windows.

    ``windows`` is a tuple of ``(windows, batch, time, ...)`` arrays
    (`seqnets.training.tbptt.split_windows`).
    """

    def __init__(self, epoch: Callable, state: Any, carry: Any, windows: tuple):
        self.epoch, self.state, self.carry, self.windows = epoch, state, carry, windows

    def __call__(self) -> None:
        self.state, self.carry, metrics = self.epoch(self.state, self.carry, self.windows)
        metrics["loss"].block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a[0]) for a in self.windows)

    def peak_memory(self) -> tuple[int | None, str]:
        return xla_peak_memory(self.epoch, self.state, self.carry, self.windows)


class JaxWindowLoop:
    """One jitted ``(state, carry, window) -> (state, carry, metrics)`` call per window."""

    def __init__(self, step: Callable, state: Any, carry: Any, windows: list):
        self.step, self.state, self.carry, self.windows = step, state, carry, windows

    def __call__(self) -> None:
        for window in self.windows:
            self.state, self.carry, metrics = self.step(self.state, self.carry, window)
        metrics["loss"].block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.windows[0])

    def peak_memory(self) -> tuple[int | None, str]:
        # The window calls run one after another on the same shapes: one call's plan is the
        # loop's peak.
        peak, how = xla_peak_memory(self.step, self.state, self.carry, self.windows[0])
        return peak, f"{how}, one window's call"
