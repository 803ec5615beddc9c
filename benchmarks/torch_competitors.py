"""PyTorch competitors (CPU): runners that train on the harness's NumPy arrays.

Imports torch on first use only. Run as a module it measures the peak memory of a
classifier train step in a fresh process (PyTorch has no compile-time memory analysis):

    python -m benchmarks.torch_competitors --peak BATCH TIME INPUTS HIDDEN THREADS

prints ``{"bytes": growth of the max RSS over two train steps, "new_peak": bool}`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import Workload, classifier_data, echo_data


class LSTMClassifier:
    """``nn.LSTM`` (batch first), a linear head on the last hidden state, Adam 1e-3."""

    def __init__(self, w: Workload, threads: int | None = None):
        import torch

        torch.manual_seed(0)
        self.w, self.threads = w, threads
        self.lstm = torch.nn.LSTM(w.inputs, w.hidden, batch_first=True)
        self.head = torch.nn.Linear(w.hidden, 10)
        self.optimizer = torch.optim.Adam([*self.lstm.parameters(), *self.head.parameters()],
                                          lr=1e-3)
        x, y = classifier_data(w)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y).long()

    def __call__(self) -> None:
        import torch

        self.optimizer.zero_grad()
        _, (h, _) = self.lstm(self.x)
        loss = torch.nn.functional.cross_entropy(self.head(h[-1]), self.y)
        loss.backward()
        self.optimizer.step()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return self.x.numpy(), self.y.numpy()

    def peak_memory(self) -> tuple[int | None, str]:
        w = self.w
        threads = self.threads or 1
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.torch_competitors", "--peak",
             *map(str, (w.batch, w.time, w.inputs, w.hidden, threads))],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        found = json.loads(out.stdout)
        how = "max RSS growth over 2 steps after 2 steps at T = 1, fresh process"
        # Without a new peak the steps fit in memory the warm-up already held: an upper bound.
        return found["bytes"], how if found["new_peak"] else how + " (upper bound: no new peak)"


class RNNWindowLoop:
    """``nn.RNN`` (tanh) and a 2-class head per step, Adagrad 0.3, one update per window.

    The carry is detached between windows (truncated BPTT). It does not measure its
    memory (workload C reports none).
    """

    def __init__(self, w: Workload):
        import torch

        torch.manual_seed(0)
        self.w = w
        self.rnn = torch.nn.RNN(1, w.hidden, batch_first=True)
        self.head = torch.nn.Linear(w.hidden, 2)
        self.optimizer = torch.optim.Adagrad([*self.rnn.parameters(), *self.head.parameters()],
                                             lr=0.3)
        x, y = echo_data(w)
        self.x, self.y = torch.from_numpy(x).float()[..., None], torch.from_numpy(y).long()
        self.carry = torch.zeros(1, w.batch, w.hidden)

    def __call__(self) -> None:
        import torch

        for k in range(self.w.windows):
            sl = slice(k * self.w.time, (k + 1) * self.w.time)
            self.optimizer.zero_grad()
            ys, h = self.rnn(self.x[:, sl], self.carry)
            loss = torch.nn.functional.cross_entropy(self.head(ys).reshape(-1, 2),
                                                     self.y[:, sl].reshape(-1))
            loss.backward()
            self.optimizer.step()
            self.carry = h.detach()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return self.x[:, :self.w.time, 0].numpy(), self.y[:, :self.w.time].numpy()


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_growth(batch: int, time: int, inputs: int, hidden: int, threads: int) -> tuple[int, bool]:
    """``(max RSS growth in bytes over two steps at ``time``, whether they set a new peak)``."""
    import torch

    torch.set_num_threads(threads)
    # Two steps at T = 1 first, so that lazily loaded code and thread pools are not counted.
    for time_steps in (1, time):
        runner = LSTMClassifier(Workload("peak", batch, time_steps, inputs, hidden))
        before = _current_rss_bytes()
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        for _ in range(2):
            runner()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(peak - before, 0), peak > peak_before


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak", nargs=5, type=int, required=True,
                        metavar=("BATCH", "TIME", "INPUTS", "HIDDEN", "THREADS"))
    args = parser.parse_args()
    growth, new_peak = _peak_growth(*args.peak)
    print(json.dumps({"bytes": growth, "new_peak": new_peak}))
