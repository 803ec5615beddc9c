"""What `benchmarks.rnn_training` measures: its workloads, competitor registries and goals.

A registry is a tuple of `benchmarks.harness.Competitor` records per workload
(`registry`), in the order the tables list them; a goal (`goals`) names two of them by
id. `REFERENCES` are the ids each workload's ratio columns divide by, and `SETTINGS`
says what seqnets' default and best settings are. The report is written by
`benchmarks.rnn_training_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax

import seqnets as sn
from benchmarks import torch_competitors
from benchmarks.harness import Competitor, Goal, Workload
from benchmarks.jax_competitors import (
    NUM_CLASSES,
    FlaxEchoLoop,
    flax_classifier,
    seqnets_classifier,
    seqnets_echo,
)

MIN_TIMED_CALLS = 20  # per competitor and workload: each figure is a median over at least this many
D_TIMES = (784, 4096, 16384)
# The linear cells workload D times in each scan mode; "auto" is the library's default mode.
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


def _best_devices() -> int:
    return jax.local_device_count()


def linear_competitors() -> list[Competitor]:
    """Every scan mode of each linear cell, and the default cell's best settings: mode auto,
    the batch split over one device per core."""
    found = [Competitor(f"{cell}_{mode}", f"seqnets {cell} mode={mode}",
                        partial(seqnets_classifier, cell=getattr(sn, cell), mode=mode))
             for cell in LINEAR_CELLS for mode in LINEAR_MODES]
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
    *linear_competitors(),
)


def registry(workload: str) -> tuple[Competitor, ...]:
    """The competitors of ``workload`` ("A" to "D"), in the order the tables list them."""
    registries = {"A": CLASSIFIERS, "B": CLASSIFIERS, "C": ECHO, "D": LONG_SEQUENCES}
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
    return [
        Goal("A", "seqnets_best", "pytorch", 1.25),
        Goal("B", "seqnets_best", "pytorch", 1.2),
        Goal("C", "seqnets_default", "pytorch_window_loop", 20.0),
        Goal("A", "seqnets_default", "flax_optimized_lstm", 1.0),
        Goal("A", "seqnets_default", "flax_lstm", 1.0),
        Goal("B", "seqnets_default", "flax_optimized_lstm", 1.0),
        Goal("B", "seqnets_default", "flax_lstm", 1.0),
        Goal("C", "seqnets_default", "flax_window_loop", 1.0),
        # The long-sequence issue: the default linear cell trains 10x as fast as nn.LSTM.
        *(Goal("D", f"{DEFAULT_LINEAR_CELL}_{settings}", "pytorch", 10.0, time=784)
          for settings in ("auto", "best")),
    ]
