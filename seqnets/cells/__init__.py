"""Recurrent cells: each a `Cell` of pure functions (init, initial_carry, project, step, apply)."""

from seqnets.cells import initializers
from seqnets.cells.base import Cell, make_cell
from seqnets.cells.elman import elman, irnn
from seqnets.cells.gru import gru
from seqnets.cells.lstm import layer_norm_lstm, lstm

__all__ = ["Cell", "elman", "gru", "initializers", "irnn", "layer_norm_lstm", "lstm", "make_cell"]
