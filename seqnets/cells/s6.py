"""Mamba's selective state space model, S6 (Gu & Dao 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", arXiv:2312.00752, Algorithm 2).

Every channel ``d`` of the input keeps a state of ``N`` numbers, and the step sizes and
the input and output maps depend on the input (they are *selective*):

    u_t = x_t W_in                        (only when input_size != hidden_size; else u_t = x_t)
    [dt_t | B_t | C_t] = u_t W_x          low-rank dt (R), B_t and C_t (N each)
    Delta_t = softplus(dt_t W_dt + b_dt)  (H,) step sizes
    A = -exp(A_log)                       (H, N), fixed over time
    h_t = exp(Delta_t A) * h_{t-1} + (Delta_t u_t) B_t      h: (H, N), products per element
    y_t = h_t C_t + D * u_t               (H,): the state read out by C_t, plus the skip D

so the carry update is diagonal (``a_t = exp(Delta_t A)``, ``b_t = Delta_t u_t B_t``, as
in Mamba's reference ``selective_scan_ref``: the zero-order hold for A, the simplified
Euler step for B) and every mode of `seqnets.ops.diagonal` applies. The carry is
``(batch, H, N)``: the first seqnets cell whose state has an axis beyond the width. The
Mamba block around S6 (the input projection to ``2 * d_inner``, the causal convolution,
the SiLU gate) is not part of this cell.

Initialisation, as in Mamba's code (``mamba_simple.py``):
* ``A_log[d, n] = log(n + 1)``: S4D-real, ``A = -(1, 2, ..., N)`` in every channel;
* ``b_dt = softplus^-1(dt)`` with ``dt`` log-uniform in ``[dt_min, dt_max] = [0.001, 0.1]``
  (floored at ``1e-4``), ``W_dt`` uniform in ``±R^-0.5``;
* ``D = 1``; ``W_x`` and ``W_in`` LeCun normal; ``R = ceil(H / 16)``.
"""

from __future__ import annotations

import math
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


@cell_constructor
def s6(
    hidden_size: int,
    state_size: int = 16,
    *,
    dt_rank: int | None = None,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init_floor: float = 1e-4,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An S6 cell (Mamba's selective SSM).

    Args:
      hidden_size: the number of channels ``H``: the width of the outputs, and of the
        input after ``W_in``.
      state_size: the state size ``N`` per channel (Mamba's ``d_state``).
      dt_rank: the rank ``R`` of the step-size projection; ``ceil(H / 16)`` when None.
      dt_min: the smallest initial step size.
      dt_max: the largest initial step size.
      dt_init_floor: initial step sizes are at least this.
      input_init: initializer of ``W_x`` and ``W_in``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The carry and the elementwise math stay at least float32
        (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the diagonal family. Parameters: ``w_x (H, R + 2N)``, ``w_dt (R, H)``,
      ``b_dt (H,)``, ``a_log (H, N)``, ``d (H,)``, and ``w_in (input_size, H)`` when
      ``input_size != H``. Carry: ``h``, ``(batch, H, N)``, float32 (the state dtype).
    """
    H = check_hidden_size(hidden_size)
    N = check_hidden_size(state_size)
    R = math.ceil(H / 16) if dt_rank is None else check_hidden_size(dt_rank)
    if not 0.0 < dt_min <= dt_max:
        raise ValueError(f"s6 needs 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}.")
    p = precision(dtype, param_dtype, where="s6")
    state = p.state_dtype

    def init(key: Array, input_size: int) -> Params:
        k_in, k_x, k_w, k_dt = jax.random.split(key, 4)
        log_dt = jax.random.uniform(k_dt, (H,), minval=math.log(dt_min),
                                    maxval=math.log(dt_max))
        dt = jnp.maximum(jnp.exp(log_dt), dt_init_floor)
        params = {
            "w_x": input_init(k_x, (H, R + 2 * N), jnp.float32),
            "w_dt": jax.random.uniform(k_w, (R, H), minval=-(R**-0.5), maxval=R**-0.5),
            "b_dt": dt + jnp.log(-jnp.expm1(-dt)),  # softplus(b_dt) = dt
            "a_log": jnp.log(jnp.broadcast_to(jnp.arange(1, N + 1, dtype=jnp.float32), (H, N))),
            "d": jnp.ones((H,), jnp.float32),
        }
        if input_size != H:
            params["w_in"] = input_init(k_in, (input_size, H), jnp.float32)
        return params

    def project(params: Params, x: Array) -> Array:
        """``(..., input_size) -> (..., 2H + 2N)``: ``[u | Delta | B | C]``."""
        if "w_in" in params:
            check_input(params, x, "s6", kernel="w_in")
            u = p.matmul(x, params["w_in"]).astype(state)
        else:
            check_input(params, x, "s6")  # w_x's rows: the width H
            u = x.astype(state)
        dt, b, c = jnp.split(p.matmul(u, params["w_x"]).astype(state), [R, R + N], axis=-1)
        delta = jax.nn.softplus(p.matmul(dt, params["w_dt"]) + params["b_dt"]).astype(state)
        return jnp.concatenate([u, delta, b, c], axis=-1)

    def coefficients(params: Params, projected: Array) -> tuple[Array, Array]:
        u, delta, b, _ = jnp.split(projected, [H, 2 * H, 2 * H + N], axis=-1)
        a = jnp.exp(delta[..., :, None] * -jnp.exp(params["a_log"].astype(delta.dtype)))
        return a, (delta * u)[..., :, None] * b[..., None, :]

    def readout(params: Params, h: Array, projected: Array) -> Array:
        u, c = projected[..., :H], projected[..., 2 * H + N:]
        return jnp.sum(h * c[..., None, :], axis=-1) + params["d"].astype(u.dtype) * u

    return make_linear_cell(
        init=init,
        project=project,
        coefficients=coefficients,
        readout=readout,
        state_size=(H, N),
        hidden_size=H,
        name="s6",
        precision=p,
    )

