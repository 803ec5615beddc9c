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
    zeros_carry,
)
from seqnets.cells.dtypes import precision


@cell_constructor
def elman(
    hidden_size: int,
    *,
    activation: Callable[[Array], Array] = jnp.tanh,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An Elman (vanilla) RNN cell.

    Args:
      hidden_size: width ``H`` of ``h``.
      activation: elementwise nonlinearity, ``jnp.tanh`` by default.
      use_bias: whether there is a bias ``b``.
      input_init: initializer of the ``(input_size, H)`` input kernel.
      recurrent_init: initializer of the ``(H, H)`` recurrent kernel.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The carry and the activation stay at least float32 (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell`. Parameters: ``w_x (input_size, H)``, ``w_h (H, H)``, ``b (H,)`` (with
      ``use_bias``). Carry: ``h``, ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)
    p = precision(dtype, param_dtype, where="elman")

    def init(key: Array, input_size: int) -> Params:
        params = initializers.gate_kernels(key, input_size, H, 1, input_init, recurrent_init)
        if use_bias:
            params["b"] = jnp.zeros((H,), jnp.float32)
        return params

    def step(params: Params, h: Array, projected: Array):
        h = activation(p.cast_compute(projected + p.matmul(h, params["w_h"])))
        return p.cast_state(h), h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 1, p.state_dtype),
        project=input_projection("elman", p),
        step=step,
        hidden_size=H,
        name="elman",
        precision=p,
    )


@cell_constructor
def irnn(hidden_size: int, *, scale: float = 1.0, use_bias: bool = True, dtype: Any = None,
         param_dtype: Any = jnp.float32) -> Cell:
    """The IRNN: an Elman cell with ReLU and a ``scale * I`` recurrent matrix at init."""
    return elman(
        hidden_size,
        activation=jax.nn.relu,
        use_bias=use_bias,
        recurrent_init=initializers.identity(scale),
        dtype=dtype,
        param_dtype=param_dtype,
    )
