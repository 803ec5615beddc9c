"""The MQAR model: a token embedding, residual blocks around any seqnets cell, a final norm
and a linear head over the vocabulary.

For tokens ``(batch, time)``:

    x = E[tokens]                                  (batch, time, width), E (vocab, width)
    x = block_l(x)  for l = 1 .. num_layers        `seqnets.layers.residual_block(cell)`:
                                                   x + rnn(norm(x)), then x + GeGLU(norm(x))
    logits = rms_norm(x) @ W_head                  (batch, time, vocab)

The loss and the accuracy are those of the queried steps alone (every other label is
ignored, as in Zoology).

Every cell runs at its defaults from the width, except where `CELL_OPTIONS` says: the
multi-head matrix-state cells use 2 heads (at width 64 their defaults give head sizes of
8-16, too small to hold 16 keys apart), and Mamba-2 a state size of 32 (its default of
128 gives it six times Gated DeltaNet's state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqnets as sn
from seqnets import layers
from seqnets.cells.base import flat_matmul

# The cells of the experiment, by family (the order): classic, diagonal, gated
# outer-product (matrix state, no delta rule), delta rule, and the xLSTM pair.
CELLS = ("lstm", "min_gru", "lru", "s6", "gla", "mamba2", "delta_net", "gated_delta_net",
         "mlstm", "slstm")
FAMILIES = {"lstm": "classic", "slstm": "classic", "min_gru": "diagonal", "lru": "diagonal",
            "s6": "diagonal", "gla": "gated outer product", "mamba2": "gated outer product",
            "mlstm": "gated outer product", "delta_net": "delta rule",
            "gated_delta_net": "delta rule"}


CELL_OPTIONS: dict[str, dict[str, Any]] = {
    "gla": {"num_heads": 2}, "delta_net": {"num_heads": 2}, "gated_delta_net": {"num_heads": 2},
    "mlstm": {"num_heads": 2}, "mamba2": {"num_heads": 2, "state_size": 32},
}


def make_cell(name: str, width: int, options: Mapping[str, Any] | None = None) -> sn.Cell:
    """``seqnets.<name>(width, **options)`` (default: `CELL_OPTIONS`): every block's cell.

    Raises:
      ValueError: for a name outside `CELLS`.
    """
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; the MQAR cells are {', '.join(CELLS)}.")
    options = CELL_OPTIONS.get(name, {}) if options is None else options
    return getattr(sn, name)(width, **dict(options))


class Model(NamedTuple):
    """The MQAR language model (see the module docstring).

    Attributes:
      cell: the recurrent cell of every block (input and output width ``width``).
      vocab_size: the token vocabulary (embedding rows, head columns).
      num_layers: how many residual blocks.
      mlp_factor: each block's gated MLP has ``mlp_factor * width`` hidden units.
      mode: `seqnets.scan`'s evaluation order for the cell (``"auto"``...).
    """

    cell: sn.Cell
    vocab_size: int
    num_layers: int = 2
    mlp_factor: int = 2
    mode: str = "auto"

    @property
    def width(self) -> int:
        """The model width: the cell's hidden size."""
        return self.cell.hidden_size

    @property
    def block(self) -> layers.ResidualBlock:
        """The library block every layer is."""
        return layers.residual_block(self.cell, mlp_factor=self.mlp_factor,
                                     depth=self.num_layers, mode=self.mode)


def make_model(cell: str, width: int, vocab_size: int, *, num_layers: int = 2,
               mlp_factor: int = 2, cell_options: Mapping[str, Any] | None = None,
               mode: str = "auto") -> Model:
    """A `Model` around ``seqnets.<cell>(width, **cell_options)``; ValueError for bad sizes."""
    for value, what in ((width, "width"), (vocab_size, "vocab_size"),
                        (num_layers, "num_layers"), (mlp_factor, "mlp_factor")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"the MQAR model's {what} must be a positive int; got {value!r}.")
    return Model(make_cell(cell, width, cell_options), vocab_size, num_layers, mlp_factor, mode)


def init_params(model: Model, key: jax.Array) -> dict:
    """``{"embed": (vocab, width), "blocks": [block params] * num_layers, "norm": (width,),
    "head": (width, vocab)}``.

    The embedding is standard normal (what the blocks' pre-norm sees is scale-free, and
    the residual stream starts at unit scale); the head is LeCun normal.
    """
    keys = jax.random.split(key, model.num_layers + 2)
    block = model.block
    W, V = model.width, model.vocab_size
    return {
        "embed": jax.random.normal(keys[0], (V, W), jnp.float32),
        "blocks": [block.init(k, W) for k in keys[2:]],
        "norm": jnp.ones((W,), jnp.float32),
        "head": jax.nn.initializers.lecun_normal()(keys[1], (W, V), jnp.float32),
    }


def logits(model: Model, params: dict, tokens: jax.Array) -> jax.Array:
    """Logits ``(batch, time, vocab)`` of the next token at every step of ``tokens (batch,
    time)`` (int token ids); the loss reads those of the queried steps."""
    x = params["embed"][tokens]
    block = model.block
    for block_params in params["blocks"]:
        x = block.apply(block_params, x)
    return flat_matmul(layers.rms_norm(x, params["norm"]), params["head"])


def state_size(cell: sn.Cell) -> int:
    """Real numbers in one sequence's carry of ``cell``, per layer (a complex number counts
    two): what the recurrence keeps from the past. It includes a short convolution's
    buffer where the cell has one (its last ``conv_size - 1`` inputs)."""
    carry = jax.eval_shape(lambda: cell.initial_carry(1))
    return sum(math.prod(leaf.shape) * (2 if jnp.issubdtype(leaf.dtype, jnp.complexfloating)
                                        else 1) for leaf in jax.tree.leaves(carry))
