"""The Penn Treebank as ``ptb`` reads it: the splits cut to size, and the training text as
``BATCH_SIZE`` contiguous streams in windows of ``num_steps`` (`seqnets.data.lm_streams`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seqnets.data import lm_streams, load_ptb
from seqnets.data.ptb import PTB
from seqnets.training.tbptt import split_windows

if TYPE_CHECKING:
    from experiments.ptb.configs import Config

BATCH_SIZE = 20


def load_data(config: Config) -> tuple[PTB, np.ndarray, np.ndarray, np.ndarray]:
    """``(data, train, valid, test)``: the loaded text and its id splits, cut to
    ``--train-tokens`` and ``--eval-tokens``."""
    data = load_ptb(config.source, config.data_dir)
    train = data.train if config.train_tokens is None else data.train[: config.train_tokens]
    n = config.eval_tokens
    valid, test = (data.valid, data.test) if n is None else (data.valid[:n], data.test[:n])
    return data, train, valid, test


def train_windows(config: Config, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets ``(windows, BATCH_SIZE, num_steps)`` of one training epoch."""
    return split_windows(lm_streams(ids, BATCH_SIZE, config.num_steps), config.num_steps)
