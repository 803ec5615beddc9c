"""Long short-term memory (Hochreiter & Schmidhuber 1997), gates in PyTorch's order.

    z = x W_x + b + h W_h            (batch, 4 * hidden), gates [i | f | g | o]
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c' = f * c + i * g;  h' = o * tanh(c')
    h' = (o * tanh(c')) W_hr         with proj_size=P (LSTMP): h' is (batch, P)

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
    check_positive_int,
    input_projection,
    make_cell,
    zeros_carry,
)
from seqnets.cells.dtypes import precision


@cell_constructor
def lstm(
    hidden_size: int,
    *,
    proj_size: int | None = None,
    forget_bias: float = 1.0,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An LSTM cell, optionally with a projection of its output (LSTMP).

    Args:
      hidden_size: width ``H`` of ``c`` (and of ``h`` without a projection).
      proj_size: width ``P < H`` of a projection of the output, PyTorch's ``proj_size``
        (Sak et al. 2014): ``h' = (o * tanh(c')) W_hr``, and ``h'`` (``P`` wide) is both
        the output and the recurrent input. None (default): no projection.
      forget_bias: initial value of the forget-gate bias (with ``use_bias``).
      use_bias: whether the gates have the bias ``b``; False gives no bias parameter.
      input_init: initializer of each gate's ``(input_size, H)`` input kernel, and of
        ``W_hr``.
      recurrent_init: initializer of each gate's ``(H, H)`` recurrent kernel (with a
        projection, ``(P, H)``).
      dtype: compute dtype of the matmuls and of the outputs (e.g. ``jnp.bfloat16``);
        ``param_dtype`` when None. The carry and the gate math stay at least float32
        (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` with ``hidden_size`` ``P`` with a projection, else ``H``. Parameters:
      ``w_x (input_size, 4H)``, ``w_h (R, 4H)``, ``b (4H,)`` (with ``use_bias``) and, with
      a projection, ``w_hr (H, P)``; ``R`` is ``P`` with a projection, else ``H``.
      Carry: ``(c, h)``, ``c (batch, H)`` and ``h (batch, R)``.
    """
    H = check_hidden_size(hidden_size)
    P = None if proj_size is None else check_positive_int(proj_size, "proj_size", "lstm")
    if P is not None and P >= H:
        raise ValueError(f"lstm: proj_size must be smaller than hidden_size, as in PyTorch; got "
                         f"proj_size={P}, hidden_size={H}. Use proj_size=None for no projection.")
    R = H if P is None else P
    p = precision(dtype, param_dtype, where="lstm")

    def init(key: Array, input_size: int) -> Params:
        # Without a projection the key goes to the gates whole, as before proj_size
        # existed: the same seed gives the same LSTM (and the documented results).
        k_gates, k_proj = jax.random.split(key) if P is not None else (key, None)
        params = initializers.gate_kernels(k_gates, input_size, H, 4, input_init,
                                           recurrent_init, recurrent_rows=R)
        if use_bias:
            params["b"] = jnp.zeros((4 * H,), jnp.float32).at[H : 2 * H].set(forget_bias)
        if P is not None:
            params["w_hr"] = input_init(k_proj, (H, P), jnp.float32)
        return params

    def step(params: Params, carry: tuple[Array, Array], projected: Array):
        c, h = carry
        # Gates in the compute dtype; the memory cell accumulates in the state dtype.
        z = p.cast_compute(projected + p.matmul(h, params["w_h"]))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = p.cast_state(jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g))
        h = jax.nn.sigmoid(o) * jnp.tanh(p.cast_compute(c))
        if P is not None:
            h = p.cast_compute(p.matmul(h, params["w_hr"]))
        return (c, p.cast_state(h)), h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 2, p.state_dtype, sizes=(H, R)),
        project=input_projection("lstm", p),
        step=step,
        hidden_size=R,
        name="lstm",
        precision=p,
    )


@cell_constructor
def layer_norm_lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    epsilon: float = 1e-5,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    recurrent_init: Initializer = initializers.orthogonal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A layer-normalised LSTM cell (Ba et al. 2016); see the module docstring.

    The input term ``LN(x W_x)`` does not depend on the carry, so `seqnets.scan` can still
    hoist it out of the time loop; the step keeps ``LN(h W_h)`` and ``LN(c')``.

    Args:
      hidden_size: width ``H`` of ``h`` and ``c``.
      forget_bias: initial value of the forget-gate bias ``b[H:2H]``.
      epsilon: added to the variance in each normalisation.
      use_bias: whether the gates and the normalisation of ``c'`` have biases (``b`` and
        ``b_c``).
      input_init: as for `lstm`.
      recurrent_init: as for `lstm`.
      dtype: as for `lstm`.
      param_dtype: as for `lstm`.

    Returns:
      A `Cell` named ``"layer_norm_lstm"``. Parameters: ``w_x (input_size, 4H)``,
      ``w_h (H, 4H)``, ``b (4H,)``, gains ``g_x (4H,)``, ``g_h (4H,)``, ``g_c (H,)`` (ones)
      and ``b_c (H,)`` (zeros); no ``b`` and ``b_c`` without ``use_bias``. Carry:
      ``(c, h)``, each ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)
    p = precision(dtype, param_dtype, where="layer_norm_lstm")

    def norm(a: Array) -> Array:
        mean = jnp.mean(a, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)
        return (a - mean) * jax.lax.rsqrt(var + epsilon)

    def init(key: Array, input_size: int) -> Params:
        params = {
            **initializers.gate_kernels(key, input_size, H, 4, input_init, recurrent_init),
            "g_x": jnp.ones((4 * H,), jnp.float32),
            "g_h": jnp.ones((4 * H,), jnp.float32),
            "g_c": jnp.ones((H,), jnp.float32),
        }
        if use_bias:
            params["b"] = jnp.zeros((4 * H,), jnp.float32).at[H : 2 * H].set(forget_bias)
            params["b_c"] = jnp.zeros((H,), jnp.float32)
        return params

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, "layer_norm_lstm")
        z = norm(p.matmul(x, params["w_x"])) * params["g_x"]
        return z + params["b"] if use_bias else z

    def step(params: Params, carry: tuple[Array, Array], projected: Array):
        c, h = carry
        # Normalisation statistics in the state dtype, gates in the compute dtype.
        z = p.cast_compute(projected + norm(p.matmul(h, params["w_h"])) * params["g_h"])
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = p.cast_state(jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g))
        c_norm = norm(c) * params["g_c"] + (params["b_c"] if use_bias else 0.0)
        h = jax.nn.sigmoid(o) * jnp.tanh(p.cast_compute(c_norm))
        return (c, p.cast_state(h)), h

    return make_cell(
        init=init,
        initial_carry=zeros_carry(H, 2, p.state_dtype),
        project=project,
        step=step,
        hidden_size=H,
        name="layer_norm_lstm",
        precision=p,
    )
