"""What every experiment shares: its workdir (metrics as JSON lines, results, a run guard),
``--smoke``'s sizes and the figures."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"

# Options that cannot change what a run computes, so `--resume` may change them. The
# device count is not among them: more devices reduce the gradient in another order, so
# the parameters differ in the last bits (see docs/parallel.md).
RUN_OPTIONS = frozenset(
    {"progress", "checkpoint_every", "keep_checkpoints", "workdir", "resume", "overwrite"}
)


def effective(config: Any, smoke_sizes: dict[str, Any]) -> Any:
    """The dataclass ``config`` with ``--smoke``'s sizes: each field of ``smoke_sizes`` is
    capped at its smoke value (and set to it where it is None, i.e. "all"). Without
    ``config.smoke``, ``config`` itself."""
    if not config.smoke:
        return config
    sizes = {
        name: smoke if getattr(config, name) is None else min(getattr(config, name), smoke)
        for name, smoke in smoke_sizes.items()
    }
    return dataclasses.replace(config, **sizes)


def _holds_run(workdir: Path) -> bool:
    """Whether an earlier run saved its config or any checkpoint in ``workdir``."""
    checkpoints = workdir / CHECKPOINT_DIR
    return (workdir / CONFIG_FILE).exists() or (
        checkpoints.exists() and (not checkpoints.is_dir() or any(checkpoints.iterdir()))
    )


def check_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, resume: bool,
                  overwrite: bool) -> None:
    """Raises if a run with ``config`` may not start in ``workdir``; changes nothing.

    Raises:
      FileExistsError: a new run (neither ``resume`` nor ``overwrite``) over an earlier one.
      ValueError: ``resume`` with a config that differs from the saved one in an option
        that changes the result (any but `RUN_OPTIONS`).
    """
    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    if resume:
        if config_path.exists():
            saved = json.loads(config_path.read_text())
            changed = {k: (saved.get(k), v) for k, v in config.items()
                       if k not in RUN_OPTIONS and saved.get(k) != v}
            if changed:
                raise ValueError(
                    f"--resume: the config differs from the run saved in {workdir}: "
                    + ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in changed.items())
                    + ". Resume with the same options, or choose another --workdir."
                )
    elif _holds_run(workdir) and not overwrite:
        raise FileExistsError(
            f"{workdir} holds an earlier run. Pass --resume to continue it, --overwrite to "
            "start afresh (the old run is moved to a sibling folder), or another --workdir."
        )


def prepare_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, resume: bool,
                    overwrite: bool) -> Path:
    """Creates ``workdir`` and guards what an earlier run saved there (`check_workdir`).

    A new run refuses to start over an earlier run's checkpoints unless ``overwrite``,
    which moves the old run aside (nothing is deleted). ``resume`` requires the same
    config as the run it continues, except for `RUN_OPTIONS`. Writes ``config.json``.
    """
    check_workdir(workdir, config, resume=resume, overwrite=overwrite)
    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    if not resume and _holds_run(workdir):
        aside = workdir.with_name(f"{workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(workdir), str(aside))
        print(f"moved the earlier run in {workdir} to {aside}")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return workdir


class MetricsLog:
    """Appends one JSON object per line to ``workdir/metrics.jsonl``."""

    def __init__(self, workdir: Path, *, keep_until_step: int | None):
        """Opens the log; on resume, drops records past ``keep_until_step`` (they will be redone)."""
        self.path = workdir / METRICS_FILE
        self.records: list[dict[str, Any]] = []
        if keep_until_step is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a kill mid-write
                    continue
                if record.get("step", 0) <= keep_until_step:
                    self.records.append(record)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def write_results(workdir: Path, results: dict[str, Any]) -> Path:
    path = workdir / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_windows(path: Path, window_losses: np.ndarray, last_window: dict, title: str) -> None:
    """The echo tutorial's figure: the loss per window, and the last window of each stream
    (inputs, target echoes, predicted echoes)."""
    plt = pyplot()
    rows = len(last_window["x"])
    fig = plt.figure(figsize=(12, 2.2 * (rows + 1)))
    ax = fig.add_subplot(rows + 1, 1, 1)
    ax.plot(window_losses, linewidth=0.6)
    ax.set(xlabel="window", ylabel="loss", title=title, yscale="log")
    for r in range(rows):
        ax = fig.add_subplot(rows + 1, 1, r + 2)
        steps = np.arange(len(last_window["x"][r]))
        ax.bar(steps - 0.27, last_window["x"][r], width=0.27, color="C0", label="input")
        ax.bar(steps, np.asarray(last_window["y"][r]) * 0.8, width=0.27, color="C2",
               label="target echo")
        ax.bar(steps + 0.27, np.asarray(last_window["predicted"][r]) * 0.6, width=0.27,
               color="C3", label="predicted echo")
        ax.set(ylim=(0, 1.1), yticks=[], ylabel=f"stream {r}")
        if r == 0:
            ax.legend(loc="upper right", ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
