"""Gated recurrent unit (Cho et al. 2014), in PyTorch's and Flax's formulation.

    r = sigmoid(x W_xr + b_r + h W_hr)
    z = sigmoid(x W_xz + b_z + h W_hz)
    n = tanh(x W_xn + b_n + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

Gates are stacked in the order ``[r | z | n]``. The recurrent bias of ``n`` is kept
apart (``b_hn``) because ``r`` multiplies it; the other recurrent biases fold into ``b``.
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
    make_cell,
    zeros_carry,
)
from seqnets.cells.dtypes import precision


@cell_constructor
def gru(
    hidden_size: int,
    *,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A GRU cell.

    Args:
      hidden_size: width ``H`` of ``h``.
      use_bias: whether the gates have biases (``b`` and ``b_hn``).
      input_init: initializer of each gate's ``(input_size, H)`` input kernel.
      recurrent_init: initializer of each gate's ``(H, H)`` recurrent kernel.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The carry and the gate math stay at least float32 (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell`. Parameters: ``w_x (input_size, 3H)``, ``w_h (H, 3H)``, and with
      ``use_bias`` ``b (3H,)`` and ``b_hn (H,)``. Carry: ``h``, ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)
    p = precision(dtype, param_dtype, where="gru")

    def init(key: Array, input_size: int) -> Params:
        params = initializers.gate_kernels(key, input_size, H, 3, input_init, recurrent_init)
        if use_bias:
            params["b"] = jnp.zeros((3 * H,), jnp.float32)
            params["b_hn"] = jnp.zeros((H,), jnp.float32)
        return params

    def step(params: Params, h: Array, projected: Array):
        hw = p.matmul(h, params["w_h"])
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(hw, 3, axis=-1)
        # Gates in the compute dtype; the new state mixes into h in the state dtype.
        r = jax.nn.sigmoid(p.cast_compute(x_r + h_r))
        z = jax.nn.sigmoid(p.cast_compute(x_z + h_z))
        h_n = h_n + params["b_hn"] if use_bias else h_n
        n = jnp.tanh(p.cast_compute(x_n + r * h_n))
        h = p.cast_state((1.0 - z) * n + z * h)
        return h, h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 1, p.state_dtype),
        project=input_projection("gru", p),
        step=step,
        hidden_size=H,
        name="gru",
        precision=p,
    )
