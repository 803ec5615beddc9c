"""Gated linear attention, GLA (Yang, Wang, Shen, Panda & Kim 2024, "Gated Linear Attention
Transformers with Hardware-Efficient Training", ICML 2024, arXiv:2312.06635).

Per step, on the input ``x_t``, with ``H`` heads of key size ``K`` and value size ``V``:

    [q | k | v | z] = x_t W_x                      (no bias)
    alpha_t = sigmoid(x_t W_1 W_2 + b)^(1/16)      a decay per key, low-rank (rank 16)
    g_t = log alpha_t = logsigmoid(x_t W_1 W_2 + b) / 16
    S_h <- diag(alpha_h) S_h + k_h v_h^T           S_h (K, V)
    o_h = S_h^T (q_h / sqrt(K))
    y_t = concat_h(RMSNorm(o_h) * swish(z_h)) W_o

so the state update is the ``"gla"`` family's with a decay per key (`seqnets.ops.gla`) and
every mode of it applies (``"sequential"``, ``"chunked"``, ``"parallel"``). The paper's
layer has no convolution: the carry is ``{"state": (batch, H, K, V)}``.

Details follow flash-linear-attention's ``GatedLinearAttention`` layer
(``fla/layers/gla.py``, v0.6.0) with its defaults: 4 heads, key width ``H K = hidden / 2``
(``expand_k = 0.5``), value width ``H V = hidden``, the gate's normaliser 16 and rank 16,
no feature map on q and k, the output RMSNorm (``eps = 1e-5``, the gain shared by the heads)
with the swish gate.

Initialisation: ``W_x``, ``W_1``, ``W_2``, ``W_o`` LeCun normal, ``b = 0`` (fla's models
zero every bias), so ``alpha`` starts near ``0.5^(1/16) = 0.96``; the RMSNorm gain ones.
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
    expanded,
    gated_output,
    head_count,
    make_matrix_cell,
    split_heads,
)


@cell_constructor
def gla(
    hidden_size: int,
    num_heads: int | None = None,
    *,
    expand_k: float = 0.5,
    expand_v: float = 1.0,
    gate_low_rank_dim: int = 16,
    gate_logit_normalizer: float = 16.0,
    norm_eps: float = 1e-5,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A GLA layer as a cell.

    Args:
      hidden_size: the width of the outputs.
      num_heads: ``H``; when None, 4 if it divides the key and value widths (else 2, 1).
      expand_k: the key width ``H K`` is ``hidden_size * expand_k``.
      expand_v: the value width ``H V`` is ``hidden_size * expand_v``.
      gate_low_rank_dim: the rank of the decay's projection ``W_1 W_2``.
      gate_logit_normalizer: ``tau`` in ``alpha = sigmoid(...)^(1/tau)``.
      norm_eps: the output RMSNorm's epsilon.
      input_init: initializer of ``W_x``, ``W_1``, ``W_2`` and ``W_o``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The convolution, the kernel's inputs and state and the carry stay at least
        float32 (`seqnets.cells.matrix`, `seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the ``"gla"`` family. Parameters: ``w_x (input_size, 2HK + 2HV + R)``
      (``[q | k | v | gate | W_1]``, ``R`` the rank), ``w_gk (R, HK)``, ``b_gk (HK,)``,
      ``norm (V,)``, ``w_o (HV, hidden_size)``. Carry: ``{"state": (batch, H, K, V)}``.
    """
    name = "gla"
    p = precision(dtype, param_dtype, where=name)
    D = check_hidden_size(hidden_size)
    key_width = expanded(name, D, expand_k, "expand_k")
    value_width = expanded(name, D, expand_v, "expand_v")
    H = head_count(name, num_heads, 4, key_width=key_width, value_width=value_width)
    K, V = key_width // H, value_width // H
    R = check_positive_int(gate_low_rank_dim, "gate_low_rank_dim", name)
    if not gate_logit_normalizer > 0:
        raise ValueError(f"{name}: gate_logit_normalizer must be positive; got "
                         f"{gate_logit_normalizer!r}.")
    tau = float(gate_logit_normalizer)
    split = [key_width, 2 * key_width, 2 * key_width + value_width,
             2 * key_width + 2 * value_width]

    def init(key: Array, input_size: int) -> Params:
        k_x, k_g, k_o = jax.random.split(key, 3)
        return {
            "w_x": input_init(k_x, (input_size, split[-1] + R), jnp.float32),
            "w_gk": input_init(k_g, (R, key_width), jnp.float32),
            "b_gk": jnp.zeros((key_width,), jnp.float32),
            "norm": jnp.ones((V,), jnp.float32),
            "w_o": input_init(k_o, (value_width, D), jnp.float32),
        }

    def project(params: Params, x: Array) -> Array:
        """``(..., input_size) -> (..., 2HK + 2HV + HK)``: ``[q | k | v | gate | gate logits]``."""
        check_input(params, x, name)
        projected = matmul(x, params["w_x"], p.dtype)
        logits = matmul(projected[..., split[-1]:], params["w_gk"], p.dtype) + params["b_gk"]
        return jnp.concatenate([projected[..., :split[-1]], logits], axis=-1)

    def inputs(params: Params, m: Array) -> dict[str, Array]:
        q, k, v, _, logits = jnp.split(m, split, axis=-1)
        return {"q": split_heads(q, H), "k": split_heads(k, H), "v": split_heads(v, H),
                "g": split_heads(jax.nn.log_sigmoid(logits) / tau, H)}

    def output(params: Params, o: Array, m: Array) -> Array:
        return gated_output(params, o, m[..., split[2]:split[3]], norm_eps, p.dtype)

    return make_matrix_cell(family="gla", init=init, project=project, inputs=inputs,
                            output=output, heads=H, key_dim=K, value_dim=V, hidden_size=D,
                            name=name,
                            precision=p)
