"""Real-Gated Linear Recurrent Unit (De et al. 2024, "Griffin", arXiv:2402.19427).

    u_t = x_t W_in                     (only when input_size != hidden_size; else u_t = x_t)
    r_t = sigmoid(u_t W_a + b_a)       recurrence gate
    i_t = sigmoid(u_t W_x + b_x)       input gate
    a_t = a^(c r_t),  a = sigmoid(Lambda),  c = 8   (log a_t = -c r_t softplus(-Lambda))
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)
    y_t = h_t

so ``b_t = sqrt(1 - a_t^2) * i_t * u_t``, except at the first step of a segment, where
the decay is 0 and the normaliser 1, ``h_t = i_t * u_t``, as recurrentgemma does at
``segment_pos == 0``: the first step from ``initial_carry``, and the step after every
reset. The carry says whether the next step starts a segment: it is a
`seqnets.cells.base.SegmentCarry` ``(start, h)``, ``start`` 1 in ``initial_carry`` and 0
after any step, so a window that continues from a returned carry does not restart its
segment. As in recurrentgemma, ``sqrt`` has its derivative bounded by 1,000 where
``1 - a_t^2`` nears 0 (``a_t -> 1``), and the gates are dense ``(H, H)`` maps here
(recurrentgemma uses block-diagonal ones, one block per head).

Initialisation (recurrentgemma's ``rnn_param_init``): ``a = sigmoid(Lambda)`` on the ring
``[min_rad, max_rad] = [0.9, 0.999]`` with ``a^2`` uniform, so ``a_t = a^(c r_t)`` at
``r_t = 1/c``. (The paper's text states the range for ``a^c``; the released code applies
it to ``a``, and seqnets follows the code.) ``W_a, W_x, W_in`` LeCun normal, biases zero.
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
    make_linear_cell,
)
from seqnets.cells.dtypes import precision

MAX_SQRT_GRADIENT = 1000.0


@jax.custom_jvp
def sqrt_bounded_derivative(x: Array) -> Array:
    """``sqrt(x)`` whose derivative is at most `MAX_SQRT_GRADIENT` (finite at ``x = 0``)."""
    return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.sqrt(x), dx / jnp.sqrt(jnp.maximum(4.0 * x, 1.0 / MAX_SQRT_GRADIENT**2))


@cell_constructor
def rg_lru(
    hidden_size: int,
    *,
    c: float = 8.0,
    min_rad: float = 0.9,
    max_rad: float = 0.999,
    use_bias: bool = True,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An RG-LRU cell.

    Args:
      hidden_size: width ``H`` of the carry and the outputs.
      c: the constant exponent scale of ``a_t = a^(c r_t)``.
      min_rad: the smallest initial ``a = sigmoid(Lambda)``.
      max_rad: the largest initial ``a``.
      use_bias: whether the gates have the bias ``b``.
      input_init: initializer of ``W_in``, ``W_a`` and ``W_x``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The carry and the gate math stay at least float32 (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the diagonal family. Parameters: ``w_x (H, 2H)`` (``[W_a | W_x]``),
      ``b (2H,)`` (with ``use_bias``), ``lam (H,)``, and ``w_in (input_size, H)`` when
      ``input_size != H``. Carry: ``SegmentCarry(start (batch,), h (batch, H))``, ``start``
      float32, ``h`` of the state dtype (float32 by default).
    """
    H = check_hidden_size(hidden_size)
    if not 0.0 < min_rad < max_rad < 1.0:
        raise ValueError(
            f"rg_lru needs 0 < min_rad < max_rad < 1; got min_rad={min_rad}, max_rad={max_rad}."
        )
    p = precision(dtype, param_dtype, where="rg_lru")

    def init(key: Array, input_size: int) -> Params:
        k_in, k_g, k_lam = jax.random.split(key, 3)
        a_sq = jax.random.uniform(k_lam, (H,), minval=min_rad**2, maxval=max_rad**2)
        log_a = 0.5 * jnp.log(a_sq)
        params = {
            "w_x": initializers.per_gate(input_init, k_g, H, H, 2),
            "lam": log_a - jnp.log(-jnp.expm1(log_a)),  # logit(a), computed in log space
        }
        if use_bias:
            params["b"] = jnp.zeros((2 * H,), jnp.float32)
        if input_size != H:
            params["w_in"] = input_init(k_in, (input_size, H), jnp.float32)
        return params

    def project(params: Params, x: Array) -> Array:
        if "w_in" in params:
            check_input(params, x, "rg_lru", kernel="w_in")
            u = p.matmul(x, params["w_in"])
        else:
            check_input(params, x, "rg_lru")
            u = x.astype(p.state_dtype)
        gates = p.matmul(u, params["w_x"])
        gates = gates + params["b"] if use_bias else gates
        return jnp.concatenate([u.astype(p.state_dtype), gates.astype(p.state_dtype)], axis=-1)

    def coefficients(params: Params, projected: Array, start: Array) -> tuple[Array, Array]:
        u, k_a, k_x = jnp.split(projected, 3, axis=-1)
        log_a = -c * jax.nn.sigmoid(k_a) * jax.nn.softplus(-params["lam"].astype(u.dtype))
        a = jnp.exp(log_a)
        norm = sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a))  # sqrt(1 - a_t^2)
        gated = jax.nn.sigmoid(k_x) * u
        # A segment's first step: no decay, no normaliser (recurrentgemma's segment_pos 0).
        return jnp.where(start, 0.0, a), jnp.where(start, gated, norm * gated)

    def readout(params: Params, h: Array, projected: Array) -> Array:
        return h

    return make_linear_cell(
        init=init,
        project=project,
        coefficients=coefficients,
        readout=readout,
        state_size=H,
        hidden_size=H,
        name="rg_lru",
        starts_segments=True,
        precision=p,
    )
