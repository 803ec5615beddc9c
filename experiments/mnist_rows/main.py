"""The command line of ``python -m experiments.mnist_rows``."""

from __future__ import annotations

from experiments import cli
from experiments.mnist_rows.configs import Config, validate
from experiments.mnist_rows.train import train_and_evaluate


def main(args: list[str] | None = None) -> None:
    """Parses ``args`` (default: ``sys.argv``) and runs: ``error: <message>`` and exit code
    2 for a bad config (`experiments.cli.run`)."""
    cli.run(Config, validate, train_and_evaluate, args)
