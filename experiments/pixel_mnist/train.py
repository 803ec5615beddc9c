"""``pixel_mnist`` as a task of the classification trainer."""

from __future__ import annotations

from pathlib import Path

from experiments import classification, mnist_data
from experiments.pixel_mnist.configs import Config, validate
from experiments.pixel_mnist.models import init_params, logits_fn, make_model


def task(config: Config) -> classification.Task:
    """784 pixels as time steps, in ``--permute``'s order; dropout in training steps only."""
    model = make_model(config)
    name = "psMNIST" if config.permute else "sMNIST"
    return classification.Task(
        init_params=lambda key: init_params(model, key),
        logits=lambda params, images, key: logits_fn(
            config, model, params, images, key if config.dropout > 0 else None),
        load_data=lambda: mnist_data.load(config),
        title=f"{name} (784 steps x 1 pixel), {config.cell}",
    )


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains, evaluates on the test set every epoch, writes outputs, returns the results."""
    config = validate(config)
    return classification.train_and_evaluate(config, workdir, task(config))
