"""Recurrent cells: each a `Cell` of pure functions (init, initial_carry, project, step, apply)."""

from seqnets.cells import initializers
from seqnets.cells.base import (
    Cell,
    Linear,
    Recurrence,
    SegmentCarry,
    make_cell,
    make_linear_cell,
)
from seqnets.cells.config import Config, from_config, to_config
from seqnets.cells.delta_net import delta_net
from seqnets.cells.dtypes import Precision, matmul, precision
from seqnets.cells.elman import elman, irnn
from seqnets.cells.gated_delta_net import gated_delta_net
from seqnets.cells.gla import gla
from seqnets.cells.gru import gru
from seqnets.cells.lru import lru
from seqnets.cells.lstm import layer_norm_lstm, lstm
from seqnets.cells.mamba2 import mamba2
from seqnets.cells.matrix import make_matrix_cell
from seqnets.cells.min_gru import min_gru
from seqnets.cells.min_lstm import min_lstm
from seqnets.cells.mlstm import mlstm
from seqnets.cells.rg_lru import rg_lru
from seqnets.cells.s6 import s6
from seqnets.cells.slstm import SLSTMState, slstm

__all__ = [
    "Cell",
    "Config",
    "Linear",
    "Precision",
    "Recurrence",
    "SLSTMState",
    "SegmentCarry",
    "delta_net",
    "elman",
    "from_config",
    "gated_delta_net",
    "gla",
    "gru",
    "initializers",
    "irnn",
    "layer_norm_lstm",
    "lru",
    "lstm",
    "make_cell",
    "make_linear_cell",
    "make_matrix_cell",
    "mamba2",
    "matmul",
    "min_gru",
    "min_lstm",
    "mlstm",
    "precision",
    "rg_lru",
    "s6",
    "slstm",
    "to_config",
]
