"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
Long Sequences", arXiv:2303.06349).

A complex diagonal linear recurrence with an exponential parametrisation:

    lambda = exp(-exp(nu_log) + i * exp(theta_log))            (N,) complex, |lambda| < 1
    gamma = exp(gamma_log)                                     (N,) normalisation of B
    h_t = lambda * h_{t-1} + gamma * (x_t B)                    B = B_re + i B_im, (I, N)
    y_t = Re(h_t C) + D x_t                                     C = C_re + i C_im, (N, H)

so ``a_t = lambda``, the same at every step (``coefficients`` returns it as ``(N,)``), and
``b_t = gamma * (x_t B)``. The carry is complex64 ``(batch, N)``; ``project`` returns the
real float32 ``[Re(xB) | Im(xB) | D x]``, ``(..., 2N + H)``, and the outputs are real.

Initialisation (the paper's "ring" init): ``|lambda|`` uniform on the ring between
``r_min`` and ``r_max`` (area-uniform: ``|lambda|^2`` uniform in ``[r_min^2, r_max^2]``),
its phase uniform in ``[0, max_phase]``; ``gamma_log = log(sqrt(1 - |lambda|^2))``
(trainable, as in the paper's code); ``B_re, B_im ~ N(0, 1 / (2 I))``,
``C_re, C_im ~ N(0, 1 / N)``. ``D`` is the paper's elementwise skip ``(H,)``, ``N(0, 1)``,
when ``input_size == hidden_size``; otherwise a dense skip ``(input_size, H)``, LeCun
normal (the paper has no such case: its input and output widths are equal).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from seqnets.cells.base import (
    Array,
    Cell,
    Params,
    cell_constructor,
    check_hidden_size,
    check_input,
    make_linear_cell,
)
from seqnets.cells.dtypes import precision


@cell_constructor
def lru(
    hidden_size: int,
    state_size: int | None = None,
    *,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An LRU cell.

    Args:
      hidden_size: width ``H`` of the outputs.
      state_size: width ``N`` of the complex state; ``hidden_size`` when None.
      r_min: the inner radius of the ring ``r_min <= |lambda| < r_max`` of the initial
        eigenvalues, ``0 <= r_min < r_max``.
      r_max: its outer radius, at most 1.
      max_phase: initial phases lie in ``[0, max_phase]``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The state and the coefficients stay at least float32 (complex64)
        (`seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the diagonal family. Parameters: ``nu_log, theta_log, gamma_log (N,)``,
      ``b_re, b_im (input_size, N)``, ``c_re, c_im (N, H)``, ``d (H,)`` or
      ``(input_size, H)``. Carry: ``h``, ``(batch, N)`` complex64 (complex128 for float64).
    """
    H = check_hidden_size(hidden_size)
    N = H if state_size is None else check_hidden_size(state_size)
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"lru needs 0 <= r_min < r_max <= 1; got r_min={r_min}, r_max={r_max}.")
    if not max_phase > 0.0:
        raise ValueError(f"lru needs max_phase > 0; got {max_phase}.")
    p = precision(dtype, param_dtype, where="lru")
    state = p.state_dtype

    def init(key: Array, input_size: int) -> Params:
        k_r, k_p, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
        # Open interval (0, 1): log(0) would give an infinite nu_log.
        tiny = jnp.finfo(jnp.float32).tiny
        u1 = jax.random.uniform(k_r, (N,), minval=tiny, maxval=1.0)
        u2 = jax.random.uniform(k_p, (N,), minval=tiny, maxval=1.0)
        radius_sq = u1 * (r_max**2 - r_min**2) + r_min**2
        nu_log = jnp.log(-0.5 * jnp.log(radius_sq))
        theta_log = jnp.log(max_phase * u2)
        gamma_log = 0.5 * jnp.log1p(-radius_sq)  # log sqrt(1 - |lambda|^2)
        normal = jax.random.normal
        if input_size == H:
            d = normal(k_d, (H,), jnp.float32)
        else:
            d = jax.nn.initializers.lecun_normal()(k_d, (input_size, H), jnp.float32)
        return {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "b_re": normal(k_bre, (input_size, N), jnp.float32) / math.sqrt(2 * input_size),
            "b_im": normal(k_bim, (input_size, N), jnp.float32) / math.sqrt(2 * input_size),
            "c_re": normal(k_cre, (N, H), jnp.float32) / math.sqrt(N),
            "c_im": normal(k_cim, (N, H), jnp.float32) / math.sqrt(N),
            "d": d,
        }

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, "lru", kernel="b_re")
        d = params["d"]
        skip = x.astype(state) * d if d.ndim == 1 else p.matmul(x, d)
        return jnp.concatenate(
            [p.matmul(x, params["b_re"]), p.matmul(x, params["b_im"]), skip.astype(state)],
            axis=-1,
        ).astype(state)

    def coefficients(params: Params, projected: Array) -> tuple[Array, Array]:
        re, im = projected[..., :N], projected[..., N : 2 * N]
        nu_log, theta_log, gamma_log = (params[k].astype(state)
                                        for k in ("nu_log", "theta_log", "gamma_log"))
        gamma = jnp.exp(gamma_log)
        lam = jnp.exp(jax.lax.complex(-jnp.exp(nu_log), jnp.exp(theta_log)))
        b = jax.lax.complex(gamma * re, gamma * im)
        return lam, b  # (N,): the same at every step, broadcast by the runner

    def readout(params: Params, h: Array, projected: Array) -> Array:
        skip = projected[..., 2 * N :]
        return (
            p.matmul(jnp.real(h), params["c_re"])
            - p.matmul(jnp.imag(h), params["c_im"])
            + skip
        )

    return make_linear_cell(
        init=init,
        project=project,
        coefficients=coefficients,
        readout=readout,
        state_size=N,
        hidden_size=H,
        name="lru",
        carry_dtype=jnp.promote_types(state, jnp.complex64),
        precision=p,
    )
