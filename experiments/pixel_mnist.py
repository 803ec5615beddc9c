"""Sequential MNIST: each image read one pixel at a time, 784 steps of one input.

    python -m experiments.pixel_mnist                   # sMNIST, residual linear recurrences
    python -m experiments.pixel_mnist --permute         # psMNIST: one fixed pixel permutation
    python -m experiments.pixel_mnist --cell lstm --num-layers 1 --model stack
    python -m experiments.pixel_mnist --smoke           # a quick check on a subset

The default model is a residual stack of linear recurrent blocks (norm, recurrence,
gated MLP, as in the LRU and Griffin papers: `seqnets.layers.residual_block`) over a
linear encoder of each pixel, with the time-mean of the last block's output as the
classifier's features. ``--model stack`` runs a plain `seqnets.stack` of any cell (the
classic cells' set-up: the head reads the last step). Training, evaluation, outputs,
checkpoints and ``--resume`` are those of `experiments.mnist_rows`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

import seqnets as sn
from experiments import cli, mnist_rows, models
from seqnets.cpu import tune_allocator, use_cores_as_devices

PIXELS = 28 * 28


@dataclasses.dataclass(frozen=True)
class Config(mnist_rows.Config):
    """Pixel-by-pixel MNIST (784 steps) with a seqnets recurrent network."""

    cell: Literal["min_gru", "min_lstm", "lru", "rg_lru", "lstm", "gru", "elman"] = "min_gru"
    """Recurrent cell of every block (or layer, with --model stack)."""
    model: Literal["residual", "stack"] = "residual"
    """residual: blocks of norm, recurrence and gated MLP; stack: plain stacked layers."""
    hidden_size: int = 64
    """Model width (residual) or hidden units per layer (stack). The default fits the run
    in an hour on a 2-core CPU (see docs/pixel_mnist.md)."""
    num_layers: int = 2
    """Residual blocks, or stacked layers."""
    mode: Literal["auto", "sequential", "chunked", "parallel"] = "auto"
    """How seqnets.scan evaluates a linear cell (classic cells: auto or sequential)."""
    chunk_size: int | None = None
    """Chunk length for --mode chunked, 1 to 784 (default: about sqrt(784)); only with
    --mode chunked."""
    permute: bool = False
    """psMNIST: read the pixels in one fixed order drawn from --permutation-seed."""
    permutation_seed: int = 92916
    """Seed of the fixed pixel permutation (--permute)."""
    epochs: int = 4
    """Passes over the 60,000 training images."""
    batch_size: int = 64
    """Images per train step."""
    learning_rate: float = 3e-3
    """Peak Adam learning rate."""
    schedule: Literal["cosine", "constant", "warmup_cosine"] = "warmup_cosine"
    """Learning-rate schedule (see mnist_rows)."""
    augment_shift: int = 0
    """Translate each training image by up to this many pixels per axis."""
    clip_norm: float | None = 1.0
    """Clip gradients to this global norm (None: no clipping)."""
    workdir: str = "runs/pixel_mnist"
    """Output directory: metrics, plot, results, checkpoints."""


def make_model(config: Config) -> models.Residual | sn.Stack:
    cell = models.CELLS[config.cell](config.hidden_size)
    if config.model == "stack":
        return sn.stack(cell, num_layers=config.num_layers, dropout=config.dropout)
    if config.num_layers < 1:
        raise ValueError(f"--num-layers must be at least 1; got {config.num_layers}.")
    return models.Residual(cell, config.hidden_size, config.num_layers, mode=config.mode,
                           chunk_size=config.chunk_size)


def init_params(model, key: jax.Array) -> dict:
    if isinstance(model, sn.Stack):
        return models.init_params(model, key, 1, mnist_rows.NUM_CLASSES)
    return models.residual_init(model, key, 1, mnist_rows.NUM_CLASSES)


def pixel_order(config: Config) -> np.ndarray:
    """The order in which the 784 pixels are read: raster order, or one fixed permutation."""
    if not config.permute:
        return np.arange(PIXELS)
    return np.random.default_rng(config.permutation_seed).permutation(PIXELS)


def logits_fn(config: Config, model, params: dict, images: jax.Array, key) -> jax.Array:
    """``images`` uint8 ``(batch, 28, 28)`` read as ``(batch, 784, 1)`` -> logits ``(batch, 10)``."""
    xs = images.reshape(images.shape[0], PIXELS)[:, pixel_order(config)]
    xs = (xs.astype(jnp.float32) / 255.0)[..., None]
    if isinstance(model, sn.Stack):
        _, ys = model.apply(params["rnn"], xs, key=key, mode=config.mode,
                            chunk_size=config.chunk_size)
        return models.head(params, sn.final_outputs(ys, stack=model))
    return models.residual_logits(model, params, xs)


def task(config: Config) -> mnist_rows.Task:
    name = "psMNIST" if config.permute else "sMNIST"
    return mnist_rows.Task(make_model, init_params, functools.partial(logits_fn, config),
                           f"{name} (784 steps x 1 pixel), {config.cell}")


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any data loads."""
    config = mnist_rows.validate(config, task(config))
    linear = models.CELLS[config.cell](1).linear is not None
    if config.mode in ("chunked", "parallel") and not linear:
        raise ValueError(
            f"--mode {config.mode} needs a linear recurrent cell (min_gru, min_lstm, lru, "
            f"rg_lru); --cell {config.cell} runs only with --mode auto or sequential."
        )
    if config.chunk_size is not None:
        if config.mode != "chunked":
            raise ValueError(
                f"--chunk-size {config.chunk_size} is used only with --mode chunked (this run "
                f"is --mode {config.mode}); drop --chunk-size or pass --mode chunked."
            )
        if not 1 <= config.chunk_size <= PIXELS:
            raise ValueError(f"--chunk-size must lie in [1, {PIXELS}] (the sequence has "
                             f"{PIXELS} steps); got {config.chunk_size}.")
    return config


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains, evaluates on the test set every epoch, writes outputs, returns the results."""
    return mnist_rows.train_and_evaluate(config, workdir, task(config))


def main(args: list[str] | None = None) -> None:
    """The command line: ``error: <message>`` and exit code 2 for a bad config."""
    cli.run(Config, validate, train_and_evaluate, args)


if __name__ == "__main__":
    tune_allocator()  # glibc keeps freed memory for the next step (see seqnets.cpu)
    use_cores_as_devices()  # on a CPU host, one JAX device per core (see seqnets.cpu)
    main()
