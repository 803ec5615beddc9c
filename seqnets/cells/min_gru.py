"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

    z_t = sigmoid(x_t W_z + b_z)                  update gate, from the input only
    h~_t = g(x_t W_h + b_h)                       candidate, g(v) = v + 0.5 if v >= 0 else sigmoid(v)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t        so a_t = 1 - z_t, b_t = z_t * h~_t
    y_t = h_t

Neither gate reads ``h_{t-1}``, so the update is linear in the carry and `seqnets.scan` can
evaluate it sequentially, in chunks or with an associative scan. ``g`` is the positive
activation of the paper's log-space version; it is kept here so that the parameters mean
the same as the paper's model. seqnets evaluates the plain form, not the log-space one:
``a_t = 1 - z_t`` lies in ``(0, 1)``, so ``|h_t| <= max |h~|`` at every step and nothing
overflows; no mode divides by a cumulative product of ``a``, so none can underflow into
a division (tested at T = 65,536).

Initialisation: ``w_x (input_size, 2H)`` LeCun normal per gate, ``b (2H,)`` zeros, gates
stacked ``[z | h~]``.
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


def positive(v: Array) -> Array:
    """The paper's ``g``: ``v + 0.5`` for ``v >= 0``, ``sigmoid(v)`` below; continuous, > 0."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(jnp.minimum(v, 0.0)))


@cell_constructor
def min_gru(
    hidden_size: int,
    *,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A minGRU cell: a linear recurrence whose gates read only the input.

    Args:
      hidden_size: width ``H`` of the carry and the outputs.
      use_bias: whether the gates have the bias ``b``.
      input_init: initializer of each gate's ``(input_size, H)`` input kernel.
      dtype: compute dtype of the input matmul and of the outputs; ``param_dtype`` when
        None. The carry and the gate math stay at least float32 (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the diagonal family. Parameters: ``w_x (input_size, 2H)``, ``b (2H,)``
      (with ``use_bias``). Carry: ``h``, ``(batch, H)``, float32 (the state dtype).
    """
    H = check_hidden_size(hidden_size)
    p = precision(dtype, param_dtype, where="min_gru")

    def init(key: Array, input_size: int) -> Params:
        params = {"w_x": initializers.per_gate(input_init, key, input_size, H, 2)}
        if use_bias:
            params["b"] = jnp.zeros((2 * H,), jnp.float32)
        return params

    def coefficients(params: Params, projected: Array) -> tuple[Array, Array]:
        k_z, k_h = jnp.split(projected, 2, axis=-1)
        # 1 - sigmoid(k) as sigmoid(-k): no cancellation when z is close to 1.
        return jax.nn.sigmoid(-k_z), jax.nn.sigmoid(k_z) * positive(k_h)

    def readout(params: Params, h: Array, projected: Array) -> Array:
        return h

    return make_linear_cell(
        init=init,
        project=input_projection("min_gru", p),
        coefficients=coefficients,
        readout=readout,
        state_size=H,
        hidden_size=H,
        name="min_gru",
        precision=p,
    )
