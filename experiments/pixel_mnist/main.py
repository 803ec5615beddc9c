"""The command line of ``python -m experiments.pixel_mnist``."""

from __future__ import annotations

from experiments import cli
from experiments.pixel_mnist.configs import Config, validate
from experiments.pixel_mnist.train import train_and_evaluate


def main(args: list[str] | None = None) -> None:
    """Parses ``args`` (default: ``sys.argv``) and runs: ``error: <message>`` and exit code
    2 for a bad config (`experiments.cli.run`)."""
    cli.run(Config, validate, train_and_evaluate, args)
