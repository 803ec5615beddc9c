"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

    f_t = sigmoid(x_t W_f + b_f),  i_t = sigmoid(x_t W_i + b_i)
    f'_t = f_t / (f_t + i_t),      i'_t = i_t / (f_t + i_t)      (normalised, sum to 1)
    h~_t = g(x_t W_h + b_h)        g(v) = v + 0.5 if v >= 0 else sigmoid(v)
    h_t = f'_t * h_{t-1} + i'_t * h~_t                            a_t = f'_t, b_t = i'_t * h~_t
    y_t = h_t

The normalised gates are computed in log space, ``f' = sigmoid(log f - log i)`` with
``log f = -softplus(-k_f)``: the same value as ``f / (f + i)`` without the ``0 / 0`` that
the plain quotient gives when both sigmoids underflow. ``a_t`` lies in ``[0, 1]``, so the
state stays bounded by ``max |h~|``.

Initialisation: ``w_x (input_size, 3H)`` LeCun normal per gate, ``b (3H,)`` zeros, gates
stacked ``[f | i | h~]``.
"""

from __future__ import annotations

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
    make_linear_cell,
)
from seqnets.cells.dtypes import precision
from seqnets.cells.min_gru import positive


@cell_constructor
def min_lstm(
    hidden_size: int,
    *,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A minLSTM cell: forget and input gates from the input only, normalised to sum to 1.

    Args:
      hidden_size: width ``H`` of the carry and the outputs.
      use_bias: whether the gates have the bias ``b``.
      input_init: initializer of each gate's ``(input_size, H)`` input kernel.
      dtype: compute dtype of the input matmul and of the outputs; ``param_dtype`` when
        None. The carry and the gate math stay at least float32 (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the diagonal family. Parameters: ``w_x (input_size, 3H)``, ``b (3H,)``
      (with ``use_bias``). Carry: ``h``, ``(batch, H)``, float32 (the state dtype).
    """
    H = check_hidden_size(hidden_size)
    p = precision(dtype, param_dtype, where="min_lstm")

    def init(key: Array, input_size: int) -> Params:
        params = {"w_x": initializers.per_gate(input_init, key, input_size, H, 3)}
        if use_bias:
            params["b"] = jnp.zeros((3 * H,), jnp.float32)
        return params

    def coefficients(params: Params, projected: Array) -> tuple[Array, Array]:
        k_f, k_i, k_h = jnp.split(projected, 3, axis=-1)
        log_f, log_i = -jax.nn.softplus(-k_f), -jax.nn.softplus(-k_i)
        return jax.nn.sigmoid(log_f - log_i), jax.nn.sigmoid(log_i - log_f) * positive(k_h)

    def readout(params: Params, h: Array, projected: Array) -> Array:
        return h

    return make_linear_cell(
        init=init,
        project=input_projection("min_lstm", p),
        coefficients=coefficients,
        readout=readout,
        state_size=H,
        hidden_size=H,
        name="min_lstm",
        precision=p,
    )
