"""The experiments' command line: errors read like a tool's.

A bad config (an option out of range, a batch that does not divide over the devices, a
``--workdir`` that holds another run) prints ``error: <message>`` and exits with code 2,
before any data is loaded. A checkpoint that cannot be written, or a ``--resume`` that
finds no intact checkpoint, prints ``error: <message>`` and exits with code 1. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import tyro

from experiments import reporting
from seqnets.training import CheckpointError

ConfigT = TypeVar("ConfigT")

USAGE_ERROR = 2  # as argparse and tyro exit on a bad option
RUN_ERROR = 1


def fail(error: BaseException, code: int) -> NoReturn:
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def run(
    config_type: type[ConfigT],
    validate: Callable[[ConfigT], ConfigT],
    train_and_evaluate: Callable[[ConfigT, str], Any],
    args: list[str] | None = None,
) -> Any:
    """Parses ``args`` (default: ``sys.argv``) into ``config_type``, checks it, and runs.

    ``validate(config)`` returns the effective config or raises ValueError; then the
    workdir is checked (`reporting.check_workdir`) without changing anything on disk.
    Only those two checks count as a bad config (exit code 2).
    """
    config = tyro.cli(config_type, args=args)
    try:
        config = validate(config)
        reporting.check_workdir(
            config.workdir, dataclasses.asdict(config),
            resume=getattr(config, "resume", False), overwrite=config.overwrite,
        )
    except (ValueError, FileExistsError) as error:
        fail(error, USAGE_ERROR)
    # The command line owns its process: the echoes of a failed write can arrive from
    # orbax's threads after the error itself, up to the interpreter's exit.
    quiet_orbax_thread_errors()
    try:
        return train_and_evaluate(config, config.workdir)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        # tensorstore's callbacks of a failed write may still fire during interpreter
        # shutdown, when the hooks above no longer apply, and print "Event loop is
        # closed" tracebacks. Nothing is left to save: the run's files are closed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(RUN_ERROR)


class _OrbaxThreadErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "_SignalingThread.run() raised an exception" not in record.getMessage()


def _is_closed_loop_error(error: BaseException | None) -> bool:
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def quiet_orbax_thread_errors() -> None:
    """Hides the echoes of a failed checkpoint write from orbax's background threads.

    When a write fails (disk full, read-only), orbax logs the error from each of its
    worker threads, and tensorstore's callbacks, finding orbax's event loop closed, print
    "Event loop is closed" tracebacks. The same error reaches the main thread, where
    `seqnets.training.Checkpointer` turns it into one message with the step, the path and
    the reason. Only these echoes are dropped; every other log record and exception
    prints as before. For the command line only: it changes process-wide hooks.
    """
    logging.getLogger("absl").addFilter(_OrbaxThreadErrors())
    excepthook, thread_hook = sys.excepthook, threading.excepthook

    def quiet_excepthook(kind, value, traceback):
        if not _is_closed_loop_error(value):
            excepthook(kind, value, traceback)

    def quiet_thread_hook(args):
        if not _is_closed_loop_error(args.exc_value):
            thread_hook(args)

    unraisablehook = sys.unraisablehook

    def quiet_unraisablehook(unraisable):
        # tensorstore reports an exception in its callback with PyErr_WriteUnraisable.
        if not _is_closed_loop_error(unraisable.exc_value):
            unraisablehook(unraisable)

    sys.excepthook, threading.excepthook = quiet_excepthook, quiet_thread_hook
    sys.unraisablehook = quiet_unraisablehook
