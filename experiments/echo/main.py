"""The command line of ``python -m experiments.echo``."""

from __future__ import annotations

from experiments import cli
from experiments.echo.configs import Config, validate
from experiments.echo.train import train_and_evaluate


def main(args: list[str] | None = None) -> None:
    """Parses ``args`` (default: ``sys.argv``) and runs: ``error: <message>`` and exit code
    2 for a bad config (`experiments.cli.run`)."""
    # No checkpoints to save: SIGTERM and SIGINT end the run as usual.
    cli.run(Config, validate, train_and_evaluate, args, saves_on_signal=False)
