"""``mnist_rows`` as a task of the classification trainer."""

from __future__ import annotations

from pathlib import Path

from experiments import classification, mnist_data
from experiments.mnist_rows.configs import Config, validate
from experiments.mnist_rows.models import init_params, logits_fn, make_model


def task(config: Config) -> classification.Task:
    """Rows of each image as 28 time steps; dropout (if any) in training steps only."""
    model = make_model(config)
    return classification.Task(
        init_params=lambda key: init_params(model, key),
        logits=lambda params, images, key: logits_fn(
            model, params, images, key if config.dropout > 0 else None),
        load_data=lambda: mnist_data.load(config),
        title="MNIST rows (28 steps x 28 pixels)",
    )


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains, evaluates on the test set every epoch, writes outputs, returns the results."""
    config = validate(config)
    return classification.train_and_evaluate(config, workdir, task(config))
