"""The experiments' command line: errors read like a tool's, and interrupts save.

A bad config (an option out of range, a batch that does not divide over the devices, a
``--workdir`` that holds another run, is in use by another run or cannot be written)
prints ``error: <message>`` and exits with code 2, before any data is loaded and before
anything in the workdir changes. A checkpoint or output file that cannot be written, a
``--resume`` that finds no intact checkpoint, or training that met a non-finite value
prints ``error: <message>`` and exits with code 1. Any other exception is a bug and
keeps its traceback.

An option's bounds are declared on its config field (``epochs: Count``, ``seed: Natural``,
``learning_rate: Positive``: `AtLeast`, `FinitePositive`) and checked in one place,
`check_options`, with one message per kind of bound. The library's warnings (a damaged
checkpoint moved aside) print as ``warning: <message>`` lines.

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
import typing
from collections.abc import Callable, Collection, Iterator
from typing import Annotated, Any, NoReturn, TypeVar

import tyro

from experiments import rundir
from seqnets.training import CheckpointError, NonFiniteError

ConfigT = TypeVar("ConfigT")

USAGE_ERROR = 2  # as argparse and tyro exit on a bad option
RUN_ERROR = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def fail(error: BaseException, code: int) -> NoReturn:
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# --- the options' bounds, declared on the config's fields ------------------------------


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """A field's bound: the option, when not None, is an integer ``>= minimum``."""

    minimum: int


FLOAT32_MAX = 3.4028234663852886e38


@dataclasses.dataclass(frozen=True)
class FinitePositive:
    """A field's bound: the option, when not None, is a number > 0 that is finite in
    float32, the training's dtype (``inf``, ``nan`` and ``1e39`` are refused: a learning
    rate of ``inf`` makes every update infinite)."""


# The bounds as types, for the configs' fields (tyro ignores the annotation's metadata).
Count = Annotated[int, AtLeast(1)]
OptionalCount = Annotated[int | None, AtLeast(1)]
Natural = Annotated[int, AtLeast(0)]
Positive = Annotated[float, FinitePositive()]
OptionalPositive = Annotated[float | None, FinitePositive()]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_value(name: str, value: Any, bound: AtLeast | FinitePositive) -> None:
    """Raises ValueError naming the option ``--name`` unless ``value`` is None or within
    ``bound``."""
    if value is None:
        return
    if isinstance(bound, AtLeast) and value < bound.minimum:
        raise ValueError(f"{_flag(name)} must be at least {bound.minimum}; got {value}.")
    if isinstance(bound, FinitePositive):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{_flag(name)} must be a finite number > 0; got {value}.")
        if value > FLOAT32_MAX:
            raise ValueError(f"{_flag(name)} must be at most {FLOAT32_MAX:.4g}, float32's largest "
                             f"number; got {value}.")


def check_options(config: Any, names: Collection[str] | None = None) -> None:
    """Raises ValueError naming the first option (in field order; only ``names`` if given)
    outside the bound its field declares (`AtLeast`, `FinitePositive`: `Count`,
    `Positive`, ...)."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        if names is None or field.name in names:
            for bound in getattr(hints[field.name], "__metadata__", ()):
                check_value(field.name, getattr(config, field.name), bound)


def with_smoke_sizes(config: ConfigT, smoke_sizes: dict[str, Any]) -> ConfigT:
    """The dataclass ``config`` with ``--smoke``'s sizes: each field of ``smoke_sizes`` is
    capped at its smoke value (and set to it where it is None, i.e. "all"). Without
    ``config.smoke``, ``config`` itself."""
    if not config.smoke:  # type: ignore[attr-defined]
        return config
    sizes = {
        name: smoke if getattr(config, name) is None else min(getattr(config, name), smoke)
        for name, smoke in smoke_sizes.items()
    }
    return dataclasses.replace(config, **sizes)  # type: ignore[type-var]


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
    workdir's lock is taken (`rundir.locked`, held until the run ends) and the workdir
    is checked (`rundir.check_workdir`) without changing anything else on disk. Only
    these count as a bad config (exit code 2). With ``saves_on_signal`` (a training loop
    that polls `stop_requested`), the run stops on SIGTERM and SIGINT after saving
    (`stop_on_signals`, exit code 128 + the signal); without, the signals act as usual.
    """
    config = tyro.cli(config_type, args=args, prog=prog(config_type))
    with contextlib.ExitStack() as stack:
        try:
            config = validate(config)
            stack.enter_context(rundir.locked(config.workdir))
            rundir.check_workdir(
                config.workdir, dataclasses.asdict(config),
                resume=getattr(config, "resume", False), overwrite=config.overwrite,
            )
        except (ValueError, FileExistsError) as error:
            fail(error, USAGE_ERROR)
        report_warnings()
        if saves_on_signal:
            stack.enter_context(stop_on_signals())
        try:
            return train_and_evaluate(config, config.workdir)
        except InterruptedRun as stop:
            exit_now(str(stop), 128 + stop.signum)
        except (CheckpointError, rundir.OutputError, NonFiniteError) as error:
            exit_now(f"error: {error}", RUN_ERROR)


def prog(config_type: type) -> str:
    """The command that runs ``config_type``'s experiment, for ``--help``:
    ``python -m experiments.NAME`` for a config defined in ``experiments.NAME.configs``."""
    return "python -m " + config_type.__module__.removesuffix(".configs")


def exit_now(line: str, code: int) -> NoReturn:
    """Prints ``line`` on stderr and ends the process with ``code`` at once.

    Nothing is left to do: the checkpoints are written and closed, the outputs written
    atomically, and the kernel releases the workdir's lock. Ending here, rather than in the
    interpreter's shutdown, keeps ``line`` the last one: a write that failed inside orbax
    (one `seqnets.training.Checkpointer` could not foresee) leaves tensorstore callbacks
    in flight that would print tracebacks during the shutdown.
    """
    print(line, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _WarningLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"warning: {record.getMessage()}", file=sys.stderr, flush=True)


def report_warnings() -> None:
    """Prints the library's warnings (such as a damaged checkpoint moved aside) as
    ``warning: <message>`` lines on stderr. The command line owns its process's logging."""
    library = logging.getLogger("seqnets")
    if not any(isinstance(h, _WarningLines) for h in library.handlers):
        library.addHandler(_WarningLines(logging.WARNING))
        library.propagate = False
