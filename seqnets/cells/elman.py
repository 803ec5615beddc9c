"""The Elman network, or vanilla RNN: ``h' = activation(x W_x + b + h W_h)``.

With ``activation=jax.nn.relu`` and ``recurrent_init=initializers.identity()`` it is the
IRNN of Le, Jaitly & Hinton (2015); `irnn` builds that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqnets.cells import initializers
from seqnets.cells.base import (
    Array,
    Cell,
    Initializer,
    Params,
    cell_constructor,
    check_hidden_size,
    input_projection,
    make_cell,
    matmul,
    zeros_carry,
)


@cell_constructor
def elman(
    hidden_size: int,
    *,
    activation: Callable[[Array], Array] = jnp.tanh,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = jnp.float32,
) -> Cell:
    """An Elman (vanilla) RNN cell.

    Args:
      hidden_size: width ``H`` of ``h``.
      activation: elementwise nonlinearity, ``jnp.tanh`` by default.
      input_init: initializer of the ``(input_size, H)`` input kernel.
      recurrent_init: initializer of the ``(H, H)`` recurrent kernel.
      dtype: computation dtype of the matmuls; parameters and carry stay float32.

    Returns:
      A `Cell`. Parameters: ``w_x (input_size, H)``, ``w_h (H, H)``, ``b (H,)``.
      Carry: ``h``, ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)

    def init(key: Array, input_size: int) -> Params:
        return {
            **initializers.gate_kernels(key, input_size, H, 1, input_init, recurrent_init),
            "b": jnp.zeros((H,), jnp.float32),
        }

    def step(params: Params, h: Array, projected: Array):
        h = activation(projected + matmul(h, params["w_h"], dtype))
        return h, h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 1),
        project=input_projection("elman", dtype),
        step=step,
        hidden_size=H,
        name="elman",
    )


@cell_constructor
def irnn(hidden_size: int, *, scale: float = 1.0, dtype: Any = jnp.float32) -> Cell:
    """The IRNN: an Elman cell with ReLU and a ``scale * I`` recurrent matrix at init."""
    return elman(
        hidden_size,
        activation=jax.nn.relu,
        recurrent_init=initializers.identity(scale),
        dtype=dtype,
    )
