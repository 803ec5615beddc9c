"""Mamba-2 (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality", ICML 2024, arXiv:2405.21060).

Per step, on the input ``x_t``, with ``d = expand * hidden`` inner channels in ``H`` heads
of ``P = d / H`` channels and a state size ``N``:

    [u~ | B~ | C~ | z | dt~] = x_t W_x               (no bias)
    u, B, C = SiLU(conv4(u~, B~, C~))               short causal convolution with a bias
    dt_h = softplus(dt~_h + dt_bias_h)              the step size of each head
    A_h = -exp(A_log_h)                             a scalar per head (the SSD restriction)
    h_h <- exp(dt_h A_h) h_h + B (dt_h u_h)^T       h_h (N, P); B, C shared by the heads
    y_h = h_h^T C + D_h u_h
    y_t = RMSNorm(concat_h(y_h) * swish(z)) W_o     the gate before the norm, over all d

so the state update is the ``"gla"`` family's with one decay per head (`seqnets.ops.gla`:
``q = C``, ``k = B``, ``v = dt u``, ``g = dt A``, ``scale = 1``) and every mode of it
applies (``"sequential"``, ``"chunked"``: the SSD chunked algorithm, ``"parallel"``: its
quadratic, attention-like form). The carry is ``{"conv": (batch, 3, d + 2N), "state":
(batch, H, N, P)}``; a reset clears both.

Details follow the Mamba-2 layer of ``mamba_ssm`` as flash-linear-attention's ``Mamba2``
(``fla/layers/mamba2.py``, v0.6.0) has it, with its defaults: ``expand = 2``, heads of
``P = 64`` channels (one head when ``d`` is not a multiple of 64), ``N = 128``, one group
of B and C (``n_groups = 1``), ``D`` per head, the convolution with a bias, the gated
RMSNorm with the norm after the gate (``norm_before_gate=False``, ``eps = 1e-5``), no
``dt`` limit.

Initialisation, as those layers: ``A = exp(A_log)`` uniform in ``[1, 16]``; ``dt_bias =
softplus^-1(dt)`` with ``dt`` log-uniform in ``[0.001, 0.1]`` (floored at ``1e-4``);
``D = 1``; the convolution's kernel and bias uniform in ``±1/2`` (PyTorch's ``nn.Conv1d``
default for width 4); ``W_x``, ``W_o`` LeCun normal; the RMSNorm gain ones.
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
    matmul,
)
from seqnets.cells.dtypes import precision
from seqnets.cells.matrix import (
    check_conv_size,
    check_dt_range,
    conv_init,
    head_count,
    log_uniform_dt_bias,
    make_matrix_cell,
    merge_heads,
    split_heads,
)
from seqnets.layers.norm import rms_norm


@cell_constructor
def mamba2(
    hidden_size: int,
    num_heads: int | None = None,
    *,
    state_size: int = 128,
    expand: int = 2,
    conv_size: int = 4,
    a_init_range: tuple[float, float] = (1.0, 16.0),
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init_floor: float = 1e-4,
    norm_eps: float = 1e-5,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A Mamba-2 layer as a cell.

    Args:
      hidden_size: the width of the outputs.
      num_heads: ``H``; when None, ``d / 64`` (heads of 64 channels), or 1 when ``d`` is
        not a multiple of 64.
      state_size: ``N``, the state size of each channel (Mamba's ``d_state``).
      expand: the inner width ``d`` is ``expand * hidden_size``.
      conv_size: the short convolution's width (>= 2).
      a_init_range: ``A = exp(A_log)`` starts uniform in this range.
      dt_min: the smallest initial step size ``dt``.
      dt_max: the largest initial ``dt``.
      dt_init_floor: initial step sizes are at least this.
      norm_eps: the output RMSNorm's epsilon.
      input_init: initializer of ``W_x`` and ``W_o``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The convolution, the kernel's inputs and state and the carry stay at least
        float32 (`seqnets.cells.matrix`, `seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the ``"gla"`` family. Parameters: ``w_x (input_size, 2d + 2N + H)``
      (``[u | B | C | z | dt]``), ``conv_w (conv_size, d + 2N)``, ``conv_b (d + 2N,)``,
      ``a_log (H,)``, ``dt_bias (H,)``, ``d (H,)``, ``norm (d,)``, ``w_o (d,
      hidden_size)``. Carry: ``{"conv": (batch, conv_size - 1, d + 2N), "state": (batch,
      H, N, P)}``.
    """
    name = "mamba2"
    p = precision(dtype, param_dtype, where=name)
    D = check_hidden_size(hidden_size)
    inner = D * check_positive_int(expand, "expand", name)
    N = check_positive_int(state_size, "state_size", name)
    if num_heads is None:
        num_heads = inner // 64 if inner % 64 == 0 else 1
    H = head_count(name, num_heads, 1, inner_width=inner)
    P = inner // H
    size = check_conv_size(name, conv_size)
    check_dt_range(name, dt_min, dt_max)
    low, high = a_init_range
    if not 0.0 < low <= high:
        raise ValueError(f"{name} needs 0 < a_init_range[0] <= a_init_range[1]; got "
                         f"{a_init_range}.")
    C = inner + 2 * N  # the convolved channels: u, B, C

    def init(key: Array, input_size: int) -> Params:
        k_x, k_conv, k_bias, k_a, k_dt, k_o = jax.random.split(key, 6)
        bound = size ** -0.5
        return {
            "w_x": input_init(k_x, (input_size, C + inner + H), jnp.float32),
            "conv_w": conv_init(k_conv, size, C),
            "conv_b": jax.random.uniform(k_bias, (C,), jnp.float32, -bound, bound),
            "a_log": jnp.log(jax.random.uniform(k_a, (H,), jnp.float32, low, high)),
            "dt_bias": log_uniform_dt_bias(k_dt, H, dt_min, dt_max, dt_init_floor),
            "d": jnp.ones((H,), jnp.float32),
            "norm": jnp.ones((inner,), jnp.float32),
            "w_o": input_init(k_o, (inner, D), jnp.float32),
        }

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, name)
        return matmul(x, params["w_x"], p.dtype)

    def channels(m: Array) -> tuple[Array, Array, Array]:
        """``u (..., H, P)``, ``B`` and ``C (..., N)`` after the convolution's SiLU."""
        u, b, c = jnp.split(jax.nn.silu(m[..., :C]), [inner, inner + N], axis=-1)
        return split_heads(u, H), b, c

    def inputs(params: Params, m: Array) -> dict[str, Array]:
        u, b, c = channels(m)
        dt = jax.nn.softplus(m[..., C + inner:] + params["dt_bias"])  # (..., H)
        heads = (*u.shape[:-1], N)
        return {"q": jnp.broadcast_to(c[..., None, :], heads),
                "k": jnp.broadcast_to(b[..., None, :], heads),
                "v": dt[..., None] * u, "g": -jnp.exp(params["a_log"].astype(dt.dtype)) * dt}

    def output(params: Params, o: Array, m: Array) -> Array:
        u, _, _ = channels(m)
        y = merge_heads(o + params["d"][:, None] * u) * jax.nn.silu(m[..., C:C + inner])
        return matmul(rms_norm(y, params["norm"], norm_eps), params["w_o"], p.dtype)

    return make_matrix_cell(family="gla", init=init, project=project, inputs=inputs,
                            output=output, heads=H, key_dim=N, value_dim=P, hidden_size=D,
                            name=name, conv_channels=C, conv_size=size, scale=1.0,
                            precision=p)
