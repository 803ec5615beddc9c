"""What the experiments report: metrics as JSON lines, results, and the learning curve.

Every file is written atomically (`experiments.rundir.write_atomic`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from experiments.rundir import METRICS_FILE, RESULTS_FILE, read_metrics, write_atomic


class MetricsLog:
    """One JSON object per line in ``workdir/metrics.jsonl``; each write replaces the whole
    file atomically, so a record is either all there or not at all."""

    def __init__(self, workdir: Path, *, keep_until_step: int | None):
        """Opens the log; on resume, drops records past ``keep_until_step`` (they will be redone)."""
        self.path = workdir / METRICS_FILE
        self.records: list[dict[str, Any]] = []
        if keep_until_step is not None:
            self.records = [r for r in read_metrics(self.path) if r["step"] <= keep_until_step]
        self._flush()

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._flush()

    def _flush(self) -> None:
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


def write_results(workdir: Path, results: dict[str, Any]) -> Path:
    path = workdir / RESULTS_FILE
    write_atomic(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Saves ``fig`` as a PNG at ``path`` atomically (`write_atomic`) and closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    write_atomic(path, buffer.getvalue())


def plot_learning_curve(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Train and test loss, and test accuracy, per epoch of ``metrics.jsonl`` records."""
    plt = pyplot()
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in records], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in records], marker="o", color="C1")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    ax_acc.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
