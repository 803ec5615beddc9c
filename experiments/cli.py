"""The experiments' command line: errors read like a tool's.

A bad config (an option out of range, a batch that does not divide over the devices, a
``--workdir`` that holds another run) prints ``error: <message>`` and exits with code 2,
before any data is loaded. A checkpoint that cannot be written, or a ``--resume`` that
finds no intact checkpoint, prints ``error: <message>`` and exits with code 1. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import tyro

from experiments import reporting
from seqnets.training.checkpoint import CheckpointError

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
    try:
        return train_and_evaluate(config, config.workdir)
    except CheckpointError as error:
        fail(error, RUN_ERROR)
