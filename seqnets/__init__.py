"""seqnets: recurrent neural networks for JAX as pure functions.

    >>> import jax, jax.numpy as jnp
    >>> import seqnets as sn
    >>> cell = sn.lstm(hidden_size=8)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> carry, ys = sn.scan(cell, params, jnp.ones((2, 5, 3)))
    >>> ys.shape
    (2, 5, 8)
"""

import importlib
from typing import Any

from seqnets import ops
from seqnets.cells import (
    Cell,
    Linear,
    Recurrence,
    SegmentCarry,
    delta_net,
    elman,
    from_config,
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
    to_config,
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
    "min_gru",
    "min_lstm",
    "mlstm",
    "ops",
    "rg_lru",
    "s6",
    "scan",
    "slstm",
    "stack",
    "to_config",
]

# Subpackages that `seqnets.NAME` reaches without an import of its own, imported on first
# use: training and parallel pull optax and orbax (about a second), nnx needs Flax and
# equinox Equinox, which are extras.
_SUBMODULES = ("data", "equinox", "interop", "layers", "nnx", "parallel", "training")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"seqnets.{name}")
    raise AttributeError(f"module 'seqnets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES])
