"""The experiments' command line: errors read like a tool's, and interrupts save.

A bad config (an option out of range, a batch that does not divide over the devices, a
``--workdir`` that holds another run, is in use by another run or cannot be written)
prints ``error: <message>`` and exits with code 2, before any data is loaded and before
anything in the workdir changes. A checkpoint or output file that cannot be written, a
``--resume`` that finds no intact checkpoint, or training that met a non-finite value
prints ``error: <message>`` and exits with code 1. Any other exception is a bug and
keeps its traceback.

SIGTERM (what schedulers send before they kill) and SIGINT (Ctrl-C) ask the run to stop:
at the next step boundary it saves a checkpoint, prints one line saying where, and exits
with ``128 + the signal number`` (143, 130); ``--resume`` continues it. A second signal
stops at once without saving (the checkpoints already written are intact).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import tyro

from experiments import reporting
from seqnets.training import CheckpointError, NonFiniteError

ConfigT = TypeVar("ConfigT")

USAGE_ERROR = 2  # as argparse and tyro exit on a bad option
RUN_ERROR = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def fail(error: BaseException, code: int) -> NoReturn:
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# --- checks of options that several experiments share ---------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_at_least(config: Any, minimum: int, *names: str) -> None:
    """Raises ValueError unless each option in ``names`` is None or ``>= minimum``."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ValueError(f"{_flag(name)} must be at least {minimum}; got {value}.")


FLOAT32_MAX = 3.4028234663852886e38


def check_positive(config: Any, *names: str) -> None:
    """Raises ValueError unless each option in ``names`` is None or a number > 0 that is
    finite in float32, the training's dtype (``inf``, ``nan`` and ``1e39`` are refused: a
    learning rate of ``inf`` makes every update infinite)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{_flag(name)} must be a finite number > 0; got {value}.")
        if value is not None and value > FLOAT32_MAX:
            raise ValueError(f"{_flag(name)} must be at most {FLOAT32_MAX:.4g}, float32's largest "
                             f"number; got {value}.")


# --- interrupts ------------------------------------------------------------------------

_stop: list[int] = []  # the signal that asked the run to stop, once one has


class InterruptedRun(Exception):  # noqa: N818 - a stop asked for, not an error
    """Raised by a training loop that stopped on a signal, after saving its checkpoint."""

    def __init__(self, signum: int, step: int, directory: str | os.PathLike):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name}: saved the checkpoint of step {step} in {directory}; "
            "run the same command with --resume to continue."
        )


def stop_requested() -> int | None:
    """The signal number of a SIGTERM or SIGINT received under `stop_on_signals`, else None.

    Training loops poll it at step boundaries (a host-side list lookup: no device sync).
    """
    return _stop[0] if _stop else None


def _on_signal(signum: int, frame: Any) -> None:
    if _stop:  # the second one: the user insists
        os.write(2, f"error: second {signal.Signals(signum).name}: stopped without saving; "
                    "the checkpoints already written are intact.\n".encode())
        os._exit(128 + signum)
    _stop.append(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT set `stop_requested` instead of ending the
    process; the previous handlers come back afterwards. Main thread only."""
    previous = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop.clear()


def run(
    config_type: type[ConfigT],
    validate: Callable[[ConfigT], ConfigT],
    train_and_evaluate: Callable[[ConfigT, str], Any],
    args: list[str] | None = None,
    *,
    saves_on_signal: bool = True,
) -> Any:
    """Parses ``args`` (default: ``sys.argv``) into ``config_type``, checks it, and runs.

    ``validate(config)`` returns the effective config or raises ValueError; then the
    workdir's lock is taken (`reporting.locked`, held until the run ends) and the workdir
    is checked (`reporting.check_workdir`) without changing anything else on disk. Only
    these count as a bad config (exit code 2). With ``saves_on_signal`` (a training loop
    that polls `stop_requested`), the run stops on SIGTERM and SIGINT after saving
    (`stop_on_signals`, exit code 128 + the signal); without, the signals act as usual.
    """
    config = tyro.cli(config_type, args=args)
    with contextlib.ExitStack() as stack:
        try:
            config = validate(config)
            stack.enter_context(reporting.locked(config.workdir))
            reporting.check_workdir(
                config.workdir, dataclasses.asdict(config),
                resume=getattr(config, "resume", False), overwrite=config.overwrite,
            )
        except (ValueError, FileExistsError) as error:
            fail(error, USAGE_ERROR)
        # The command line owns its process: the echoes of a failed write can arrive from
        # orbax's threads after the error itself, up to the interpreter's exit.
        quiet_orbax_thread_errors()
        if saves_on_signal:
            stack.enter_context(stop_on_signals())
        try:
            return train_and_evaluate(config, config.workdir)
        except InterruptedRun as stop:
            exit_now(str(stop), 128 + stop.signum)
        except (CheckpointError, reporting.OutputError, NonFiniteError) as error:
            exit_now(f"error: {error}", RUN_ERROR)


def exit_now(line: str, code: int) -> NoReturn:
    """Prints ``line`` on stderr and ends the process with ``code`` at once.

    tensorstore's callbacks may still fire during interpreter shutdown, when the hooks of
    `quiet_orbax_thread_errors` no longer apply, and print "Event loop is closed"
    tracebacks after the one line. Nothing is left to do: the checkpoints are written and
    closed, the outputs written atomically, and the kernel releases the workdir's lock.
    """
    print(line, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
