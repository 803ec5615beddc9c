"""seqnets: recurrent neural networks for JAX as pure functions.

    >>> import jax, jax.numpy as jnp
    >>> import seqnets as sn
    >>> cell = sn.lstm(hidden_size=8)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> carry, ys = sn.scan(cell, params, jnp.ones((2, 5, 3)))
    >>> ys.shape
    (2, 5, 8)
"""

from seqnets import ops
from seqnets.cells import (
    Cell,
    Linear,
    Recurrence,
    SegmentCarry,
    delta_net,
    elman,
    gated_delta_net,
    gla,
    gru,
    initializers,
    irnn,
    layer_norm_lstm,
    lru,
    lstm,
    make_cell,
    make_linear_cell,
    make_matrix_cell,
    mamba2,
    min_gru,
    min_lstm,
    mlstm,
    rg_lru,
    s6,
    slstm,
)
from seqnets.sequence import Stack, final_outputs, scan, stack

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "Linear",
    "Recurrence",
    "SegmentCarry",
    "Stack",
    "delta_net",
    "elman",
    "final_outputs",
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
    "min_gru",
    "min_lstm",
    "mlstm",
    "ops",
    "rg_lru",
    "s6",
    "scan",
    "slstm",
    "stack",
]
