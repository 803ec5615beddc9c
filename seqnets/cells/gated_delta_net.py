"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025, "Gated Delta Networks: Improving Mamba2
with Delta Rule", ICLR 2025, arXiv:2412.06464).

Per step, on the input ``x_t``, with ``H`` heads of key size ``K`` and value size ``V``:

    [q~ | k~ | v~ | b | a | z] = x_t W_x         (no bias)
    q, k, v = SiLU(conv4(q~, k~, v~))            short causal convolution, kernel 4
    q_h, k_h = q_h / |q_h|, k_h / |k_h|          L2-normalised per head
    beta_h = sigmoid(b_h)                        the writing strength
    g_h = -exp(A_log_h) softplus(a_h + dt_bias_h)   the log-decay, <= 0 (Mamba-2's gate)
    S_h <- exp(g_h) S_h
    S_h <- S_h + k_h (beta_h (v_h - S_h^T k_h))^T    the gated delta rule, S_h (K, V)
    o_h = S_h^T (q_h / sqrt(K))
    y_t = concat_h(RMSNorm(o_h) * swish(z_h)) W_o

so the state update is the ``"delta_rule"`` family's (`seqnets.ops.delta_rule`) and every
mode of it applies (``"sequential"``, ``"chunked"``). The carry is ``{"conv": (batch, 3,
2HK + HV), "state": (batch, H, K, V)}``; a reset clears both.

Details the paper leaves to the code follow flash-linear-attention's ``GatedDeltaNet``
layer (``fla/layers/gated_deltanet.py``, v0.6.0) with its defaults: 6 heads, key width
``H K = 0.75 hidden`` and value width ``H V = 1.5 hidden`` (fla's ``head_dim = 256``,
``num_heads = 6``, ``expand_v = 2`` at hidden 2,048, the layer of about ``6 hidden^2``
parameters), SiLU after every convolution, the gated output RMSNorm (``eps = 1e-5``, the
gain shared by the heads).

Initialisation, as fla's layer: ``A = exp(A_log)`` uniform in ``[0, 16]`` per head
(floored at ``1e-4`` so that its log is finite); ``dt_bias = softplus^-1(dt)`` with ``dt``
log-uniform in ``[dt_min, dt_max] = [0.001, 0.1]`` (floored at ``1e-4``); ``W_x``, ``W_o``
LeCun normal; the convolution's kernel uniform in ``±1/2`` (PyTorch's ``nn.Conv1d``
default), no bias; the RMSNorm gain ones.
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
    matmul,
)
from seqnets.cells.dtypes import precision
from seqnets.cells.matrix import (
    check_conv_size,
    check_dt_range,
    conv_init,
    expanded,
    gated_output,
    head_count,
    l2_normalize,
    log_uniform_dt_bias,
    make_matrix_cell,
    split_heads,
)


@cell_constructor
def gated_delta_net(
    hidden_size: int,
    num_heads: int | None = None,
    *,
    expand_k: float = 0.75,
    expand_v: float = 1.5,
    conv_size: int = 4,
    a_init_range: tuple[float, float] = (0.0, 16.0),
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init_floor: float = 1e-4,
    norm_eps: float = 1e-5,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A Gated DeltaNet layer as a cell.

    Args:
      hidden_size: the width of the outputs.
      num_heads: ``H``; when None, 6 if it divides the key and value widths (else the
        largest count below that does).
      expand_k: the key width ``H K`` is ``hidden_size * expand_k``.
      expand_v: the value width ``H V`` is ``hidden_size * expand_v``.
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
      A `Cell` of the ``"delta_rule"`` family. Parameters: ``w_x (input_size, 2HK + 2HV +
      2H)`` (``[q | k | v | beta | a | gate]``), ``conv_w (conv_size, 2HK + HV)``,
      ``a_log (H,)``, ``dt_bias (H,)``, ``norm (V,)``, ``w_o (HV, hidden_size)``. Carry:
      ``{"conv": (batch, conv_size - 1, 2HK + HV), "state": (batch, H, K, V)}``.
    """
    name = "gated_delta_net"
    p = precision(dtype, param_dtype, where=name)
    D = check_hidden_size(hidden_size)
    key_width = expanded(name, D, expand_k, "expand_k")
    value_width = expanded(name, D, expand_v, "expand_v")
    H = head_count(name, num_heads, 6, key_width=key_width, value_width=value_width)
    K, V = key_width // H, value_width // H
    size = check_conv_size(name, conv_size)
    check_dt_range(name, dt_min, dt_max)
    low, high = a_init_range
    if not 0.0 <= low <= high:
        raise ValueError(f"{name} needs 0 <= a_init_range[0] <= a_init_range[1]; got "
                         f"{a_init_range}.")
    C = 2 * key_width + value_width

    def init(key: Array, input_size: int) -> Params:
        k_x, k_conv, k_a, k_dt, k_o = jax.random.split(key, 5)
        a = jax.random.uniform(k_a, (H,), jnp.float32, low, high)
        return {
            "w_x": input_init(k_x, (input_size, C + 2 * H + value_width), jnp.float32),
            "conv_w": conv_init(k_conv, size, C),
            "a_log": jnp.log(jnp.maximum(a, 1e-4)),
            "dt_bias": log_uniform_dt_bias(k_dt, H, dt_min, dt_max, dt_init_floor),
            "norm": jnp.ones((V,), jnp.float32),
            "w_o": input_init(k_o, (value_width, D), jnp.float32),
        }

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, name)
        return matmul(x, params["w_x"], p.dtype)

    def inputs(params: Params, m: Array) -> dict[str, Array]:
        q, k, v = jnp.split(jax.nn.silu(m[..., :C]), [key_width, 2 * key_width], axis=-1)
        b, a = m[..., C:C + H], m[..., C + H:C + 2 * H]
        # exp of the parameter in the state dtype: a bfloat16 exp would round A itself
        g = -jnp.exp(params["a_log"].astype(m.dtype)) * jax.nn.softplus(a + params["dt_bias"])
        return {"q": l2_normalize(split_heads(q, H)), "k": l2_normalize(split_heads(k, H)),
                "v": split_heads(v, H), "beta": jax.nn.sigmoid(b), "g": g}

    def output(params: Params, o: Array, m: Array) -> Array:
        return gated_output(params, o, m[..., C + 2 * H:], norm_eps, p.dtype)

    return make_matrix_cell(family="delta_rule", init=init, project=project, inputs=inputs,
                            output=output, heads=H, key_dim=K, value_dim=V, hidden_size=D,
                            name=name, conv_channels=C, conv_size=size,
                            precision=p)
