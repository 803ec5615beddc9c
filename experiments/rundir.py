"""The workdir of an experiment's run: its lock, its atomic writes, and the guard that keeps
one run from taking another's place (``--resume``, ``--overwrite``).

The promises (docs/faults.md):

- One run at a time: a run holds an exclusive ``flock`` on ``<workdir>/.lock`` from before
  it reads the workdir until it exits (`locked`); a second run is refused. The kernel
  releases the lock when the process ends, however it ends, so a killed run leaves no
  stale lock.
- Nothing half-written: ``config.json``, ``results.json``, the figures and every state of
  ``metrics.jsonl`` are written to a temporary file that replaces the old one only once
  complete (`write_atomic`); a failed write leaves the previous file and raises
  `OutputError` naming the file.
- ``--overwrite`` moves the earlier run's outputs to a sibling folder; nothing is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqnets.training.checkpoint import saved_configs

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
# What a run writes in its workdir, and what --overwrite moves aside: only these, so that
# a workdir that is also some other folder (--workdir .) keeps everything else in place.
RUN_OUTPUTS = (CONFIG_FILE, METRICS_FILE, RESULTS_FILE, CHECKPOINT_DIR,
               CHECKPOINT_DIR + ".corrupt", "learning_curve.png", "perplexity.png",
               "echo_*.png")  # glob patterns

# Options that cannot change what a run computes, so `--resume` may change them. The
# device count is not among them: more devices reduce the gradient in another order, so
# the parameters differ in the last bits (see docs/parallel.md).
RUN_OPTIONS = frozenset(
    {"progress", "checkpoint_every", "keep_checkpoints", "workdir", "resume", "overwrite"}
)


class WorkdirError(ValueError):
    """The workdir cannot take this run: in use, not writable, or holding damaged files.
    Found before the run changes anything (the command line exits with code 2)."""


class OutputError(RuntimeError):
    """An output file could not be written; the previous version of it is intact."""


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder, then a rename.

    A reader sees the old file or the new one, never a part; a kill or a full disk during
    the write leaves the old file (or none) and no temporary file.

    Raises:
      OutputError: naming ``path`` and the OS reason.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(
            f"could not write {path}: {_reason(error)}. Nothing was half-written (the file is "
            "as it was before). Free space or fix the permissions, then run the same command "
            "with --resume: it continues from the last checkpoint."
        ) from error


# --- the lock ---------------------------------------------------------------------------

_HELD: dict[str, list[int]] = {}  # lock file -> [file descriptor, depth], this process's


@contextlib.contextmanager
def locked(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds the exclusive lock of ``workdir`` (created if absent) for the ``with`` block.

    Re-entrant within one process (the command line locks, then ``train_and_evaluate``
    does again). Another process that holds it makes this raise at once.

    Raises:
      WorkdirError: ``<workdir> is in use by process N``, or the workdir cannot be
        created or written (read-only file system, a file in the way, no space).
    """
    workdir = Path(workdir)
    key = os.path.abspath(workdir / LOCK_FILE)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(workdir)
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # releases the flock


def _acquire(workdir: Path) -> int:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WorkdirError(
            f"cannot write in {workdir}: {_reason(error)}. Choose a writable --workdir, or "
            "fix its permissions or the mount."
        ) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            os.close(fd)
            raise WorkdirError(f"cannot lock {workdir / LOCK_FILE}: {_reason(error)}.") from error
        holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise WorkdirError(
            f"{workdir} is in use by process {holder}. Wait for that run to end, stop it "
            "(it saves a checkpoint on SIGTERM), or choose another --workdir."
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as error:
        os.close(fd)
        raise WorkdirError(f"cannot write in {workdir}: {_reason(error)}.") from error
    return fd


# --- the workdir ------------------------------------------------------------------------


def _holds_run(workdir: Path) -> bool:
    """Whether an earlier run saved its config or any checkpoint in ``workdir``."""
    checkpoints = workdir / CHECKPOINT_DIR
    return (workdir / CONFIG_FILE).exists() or (
        checkpoints.exists() and (not checkpoints.is_dir() or any(checkpoints.iterdir()))
    )


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; raises `WorkdirError` naming the file when it is not one."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise WorkdirError(
            f"{path} is unreadable or not valid JSON (truncated?): {error}. Delete it: "
            "--resume then checks the options against the copy saved with each checkpoint."
        ) from error
    if not isinstance(saved, dict):
        raise WorkdirError(f"{path} holds {type(saved).__name__}, not a JSON object of options. "
                           "Delete it: --resume then checks against the checkpoints' copy.")
    return saved


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``: one JSON object with an int ``step`` per line.

    The last line may be torn (a run of an older seqnets killed mid-write): it is dropped,
    as it will be redone. Any other bad line raises `WorkdirError` naming its number.
    """
    lines = path.read_text().splitlines() if path.exists() else []
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
            raise WorkdirError(
                f"{path}, line {number}: {line[:60]!r} is not a metrics record (a JSON object "
                "with an int \"step\"). Repair or delete that line, then resume again."
            )
        records.append(record)
    return records


def _config_changes(saved: dict[str, Any], config: dict[str, Any]) -> str:
    changed = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in config.items()
               if k not in RUN_OPTIONS and saved.get(k) != v]
    return ", ".join(changed)


def check_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, resume: bool,
                  overwrite: bool) -> None:
    """Raises if a run with ``config`` may not start in ``workdir``; changes nothing.

    With ``resume``, ``config`` is compared with ``config.json`` and with the config saved
    with each checkpoint (which survives the loss of ``config.json``), and
    ``metrics.jsonl`` must be readable.

    Raises:
      FileExistsError: a new run (neither ``resume`` nor ``overwrite``) over an earlier one.
      ValueError: ``resume`` with a config that differs from the saved one in an option
        that changes the result (any but `RUN_OPTIONS`), or with checkpoints whose config
        cannot be known; `WorkdirError` for a damaged ``config.json`` or ``metrics.jsonl``.
    """
    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    if not resume:
        if _holds_run(workdir) and not overwrite:
            raise FileExistsError(
                f"{workdir} holds an earlier run. Pass --resume to continue it, --overwrite to "
                "start afresh (the old run is moved to a sibling folder), or another --workdir."
            )
        return
    saved = {str(config_path): read_config(config_path)} if config_path.exists() else {}
    checkpoints = saved_configs(workdir / CHECKPOINT_DIR)
    saved.update({f"the checkpoint of step {step}": c for step, c in checkpoints.items() if c})
    if checkpoints and not saved:
        raise ValueError(
            f"--resume: cannot tell which options the checkpoints in {workdir / CHECKPOINT_DIR} "
            f"were saved with ({config_path} is missing and they hold no copy). Restore "
            f"{config_path}, or start afresh in another --workdir."
        )
    for where, options in saved.items():
        changes = _config_changes(options, config)
        if changes:
            raise ValueError(
                f"--resume: the config differs from the run saved in {workdir} ({where}): "
                f"{changes}. Resume with the same options, or choose another --workdir."
            )
    read_metrics(workdir / METRICS_FILE)


def _move_aside(workdir: Path) -> Path:
    """Moves the run outputs of ``workdir`` into a new sibling folder; returns it."""
    absolute = workdir.resolve()
    if not absolute.name:
        raise WorkdirError(f"--workdir {workdir} is the file system's root; choose a folder.")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = absolute.with_name(f"{absolute.name}.old-{stamp}")
    for n in range(1, 1000):
        try:
            aside.mkdir()
            break
        except FileExistsError:
            aside = absolute.with_name(f"{absolute.name}.old-{stamp}-{n}")
    for pattern in RUN_OUTPUTS:
        for entry in sorted(absolute.glob(pattern)):
            shutil.move(str(entry), str(aside / entry.name))
    return aside


def prepare_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, resume: bool,
                    overwrite: bool) -> Path:
    """Creates ``workdir`` and guards what an earlier run saved there (`check_workdir`).

    A new run refuses to start over an earlier run's checkpoints unless ``overwrite``,
    which moves the old run's outputs aside (nothing is deleted). ``resume`` requires the
    same config as the run it continues, except for `RUN_OPTIONS`. Writes ``config.json``.
    The caller holds the workdir's lock (`locked`).
    """
    workdir = Path(workdir)
    check_workdir(workdir, config, resume=resume, overwrite=overwrite)
    if not resume and _holds_run(workdir):
        aside = _move_aside(workdir)
        print(f"moved the earlier run in {workdir} to {aside}")
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomic(workdir / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return workdir
