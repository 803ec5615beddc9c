"""What every experiment writes to its workdir: metrics as JSON lines, results, a run guard."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def prepare_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, resume: bool,
                    overwrite: bool) -> Path:
    """Creates ``workdir`` and guards what an earlier run saved there.

    A new run refuses to start over an earlier run's checkpoints unless ``overwrite``,
    which moves the old run aside (nothing is deleted). ``resume`` requires the same
    config as the run it continues.
    """
    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    has_run = (workdir / CHECKPOINT_DIR).exists() or config_path.exists()
    if resume:
        if config_path.exists():
            saved = json.loads(config_path.read_text())
            changed = {k: (saved.get(k), v) for k, v in config.items()
                       if k not in ("resume", "overwrite") and saved.get(k) != v}
            if changed:
                raise ValueError(
                    f"--resume: the config differs from the run saved in {workdir}: "
                    + ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in changed.items())
                    + ". Resume with the same options, or choose another --workdir."
                )
    elif has_run:
        if not overwrite:
            raise FileExistsError(
                f"{workdir} holds an earlier run. Pass --resume to continue it, --overwrite to "
                "start afresh (the old run is moved to a sibling folder), or another --workdir."
            )
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
