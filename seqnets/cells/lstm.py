"""Long short-term memory (Hochreiter & Schmidhuber 1997), gates in PyTorch's order.

    z = x W_x + b + h W_h            (batch, 4 * hidden), gates [i | f | g | o]
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c' = f * c + i * g;  h' = o * tanh(c')

The forget-gate bias is the parameter ``b[hidden:2*hidden]``, initialised to
``forget_bias`` (1.0): no constant hides in the step, so weights convert exactly to and
from Flax's ``LSTMCell`` and PyTorch's ``nn.LSTM``.
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
    check_input,
    input_projection,
    make_cell,
    matmul,
    zeros_carry,
)


@cell_constructor
def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = jnp.float32,
) -> Cell:
    """An LSTM cell.

    Args:
      hidden_size: width ``H`` of ``h`` and ``c``.
      forget_bias: initial value of the forget-gate bias.
      input_init: initializer of each gate's ``(input_size, H)`` input kernel.
      recurrent_init: initializer of each gate's ``(H, H)`` recurrent kernel.
      dtype: computation dtype of the matmuls (e.g. ``jnp.bfloat16`` on accelerators);
        parameters, the carry and the gate math stay float32.

    Returns:
      A `Cell`. Parameters: ``w_x (input_size, 4H)``, ``w_h (H, 4H)``, ``b (4H,)``.
      Carry: ``(c, h)``, each ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)

    def init(key: Array, input_size: int) -> Params:
        b = jnp.zeros((4 * H,), jnp.float32).at[H : 2 * H].set(forget_bias)
        return {
            **initializers.gate_kernels(key, input_size, H, 4, input_init, recurrent_init),
            "b": b,
        }

    def step(params: Params, carry: tuple[Array, Array], projected: Array):
        c, h = carry
        z = projected + matmul(h, params["w_h"], dtype)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 2),
        project=input_projection("lstm", dtype),
        step=step,
        hidden_size=H,
        name="lstm",
    )


@cell_constructor
def layer_norm_lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    epsilon: float = 1e-5,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = jnp.float32,
) -> Cell:
    """A layer-normalised LSTM cell (Ba et al. 2016); see the module docstring.

    The input term ``LN(x W_x)`` does not depend on the carry, so `seqnets.scan` can still
    hoist it out of the time loop; the step keeps ``LN(h W_h)`` and ``LN(c')``.

    Args:
      hidden_size: width ``H`` of ``h`` and ``c``.
      forget_bias: initial value of the forget-gate bias ``b[H:2H]``.
      epsilon: added to the variance in each normalisation.
      input_init: as for `lstm`.
      recurrent_init: as for `lstm`.
      dtype: as for `lstm`.

    Returns:
      A `Cell` named ``"layer_norm_lstm"``. Parameters: ``w_x (input_size, 4H)``,
      ``w_h (H, 4H)``, ``b (4H,)``, gains ``g_x (4H,)``, ``g_h (4H,)``, ``g_c (H,)`` (ones)
      and ``b_c (H,)`` (zeros). Carry: ``(c, h)``, each ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)

    def norm(a: Array) -> Array:
        mean = jnp.mean(a, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)
        return (a - mean) * jax.lax.rsqrt(var + epsilon)

    def init(key: Array, input_size: int) -> Params:
        b = jnp.zeros((4 * H,), jnp.float32).at[H : 2 * H].set(forget_bias)
        return {
            **initializers.gate_kernels(key, input_size, H, 4, input_init, recurrent_init),
            "b": b,
            "g_x": jnp.ones((4 * H,), jnp.float32),
            "g_h": jnp.ones((4 * H,), jnp.float32),
            "g_c": jnp.ones((H,), jnp.float32),
            "b_c": jnp.zeros((H,), jnp.float32),
        }

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, "layer_norm_lstm")
        return norm(matmul(x, params["w_x"], dtype)) * params["g_x"] + params["b"]

    def step(params: Params, carry: tuple[Array, Array], projected: Array):
        c, h = carry
        z = projected + norm(matmul(h, params["w_h"], dtype)) * params["g_h"]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(norm(c) * params["g_c"] + params["b_c"])
        return (c, h), h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 2),
        project=project,
        step=step,
        hidden_size=H,
        name="layer_norm_lstm",
    )
