"""The command line of ``python -m experiments.ptb``."""

from __future__ import annotations

import tyro

from experiments import cli
from experiments.ptb.configs import Config, check_sampling, validate
from experiments.ptb.sample import sample_from_run
from experiments.ptb.train import train_and_evaluate


def main(args: list[str] | None = None) -> None:
    """Trains (``error: <message>``, exit code 2, for a bad config), or with ``--sample N``
    prints N words from the run in ``--workdir``."""
    config = tyro.cli(Config, args=args, prog=cli.prog(Config))
    if config.sample != 0:
        try:
            check_sampling(config)
            text = sample_from_run(config.workdir, config.sample, config.temperature, config.seed)
        except (ValueError, FileNotFoundError) as error:
            cli.fail(error, cli.USAGE_ERROR)
        print(text)
        return
    cli.run(Config, validate, train_and_evaluate, args)
