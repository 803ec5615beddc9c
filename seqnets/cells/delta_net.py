"""DeltaNet (Yang, Wang, Zhang, Shen & Kim 2024, "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length", arXiv:2406.06484; the delta rule of Schlag, Irie &
Schmidhuber 2021, "Linear Transformers Are Secretly Fast Weight Programmers").

Per step, on the input ``x_t``, with ``H`` heads of key size ``K`` and value size ``V``:

    [q~ | k~ | v~ | b | z] = x_t W_x            (no bias; z only with use_gate)
    q, k, v = SiLU(conv4(q~, k~, v~))           short causal convolution, kernel 4, per channel
    q_h, k_h = q_h / |q_h|, k_h / |k_h|         L2-normalised per head
    beta_h = sigmoid(b_h)                       the writing strength, (H,)
    S_h <- S_h + k_h (beta_h (v_h - S_h^T k_h))^T      the delta rule, S_h (K, V)
    o_h = S_h^T (q_h / sqrt(K))
    y_t = concat_h(RMSNorm(o_h) [* swish(z_h)]) W_o

so the state update is the ``"delta_rule"`` family's (`seqnets.ops.delta_rule`, ``g = 0``)
and every mode of it applies (``"sequential"``, ``"chunked"``). The carry is ``{"conv":
(batch, 3, 2HK + HV), "state": (batch, H, K, V)}``; a reset clears both.

Details the paper leaves to the code follow flash-linear-attention's ``DeltaNet`` layer
(``fla/layers/delta_net.py``, v0.6.0) with its defaults: ``K = V = hidden / H`` (``expand_k =
expand_v = 1``), 4 heads, SiLU after the convolutions (``qk_activation="silu"``), L2 norm
with ``eps = 1e-6`` inside the root, a per-head RMSNorm (``eps = 1e-5``, its gain shared by
the heads) and no output gate by default.

Initialisation: ``W_x``, ``W_o`` LeCun normal; the convolution's kernel uniform in
``±1/2`` (PyTorch's ``nn.Conv1d`` default for a width-4 depthwise kernel, which fla's
``ShortConvolution`` keeps), no bias; the RMSNorm gain ones.
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
    conv_init,
    expanded,
    gated_output,
    head_count,
    l2_normalize,
    make_matrix_cell,
    split_heads,
)


@cell_constructor
def delta_net(
    hidden_size: int,
    num_heads: int | None = None,
    *,
    expand_k: float = 1.0,
    expand_v: float = 1.0,
    use_gate: bool = False,
    conv_size: int = 4,
    norm_eps: float = 1e-5,
    input_init: Initializer = initializers.lecun_normal,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """A DeltaNet layer as a cell.

    Args:
      hidden_size: the width of the outputs (and of the input, in the paper's blocks).
      num_heads: ``H``; when None, 4 if it divides the key and value widths (else 2, 1).
      expand_k: the key width ``H K`` is ``hidden_size * expand_k``.
      expand_v: the value width ``H V`` is ``hidden_size * expand_v``.
      use_gate: multiply the normalised output by ``swish(x_t W_z)``.
      conv_size: the short convolution's width (>= 2).
      norm_eps: the output RMSNorm's epsilon.
      input_init: initializer of ``W_x`` and ``W_o``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The convolution, the kernel's inputs and state and the carry stay at least
        float32 (`seqnets.cells.matrix`, `seqnets.cells.dtypes`).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the ``"delta_rule"`` family. Parameters: ``w_x (input_size, 2HK + HV +
      H [+ HV])`` (``[q | k | v | beta | gate]``), ``conv_w (conv_size, 2HK +
      HV)``, ``norm (V,)``, ``w_o (HV, hidden_size)``. Carry:
      ``{"conv": (batch, conv_size - 1, 2HK + HV), "state": (batch, H, K, V)}``.
    """
    name = "delta_net"
    p = precision(dtype, param_dtype, where=name)
    D = check_hidden_size(hidden_size)
    key_width = expanded(name, D, expand_k, "expand_k")
    value_width = expanded(name, D, expand_v, "expand_v")
    H = head_count(name, num_heads, 4, key_width=key_width, value_width=value_width)
    K, V = key_width // H, value_width // H
    size = check_conv_size(name, conv_size)
    C = 2 * key_width + value_width
    width = C + H + (value_width if use_gate else 0)

    def init(key: Array, input_size: int) -> Params:
        k_x, k_conv, k_o = jax.random.split(key, 3)
        return {
            "w_x": input_init(k_x, (input_size, width), jnp.float32),
            "conv_w": conv_init(k_conv, size, C),
            "norm": jnp.ones((V,), jnp.float32),
            "w_o": input_init(k_o, (value_width, D), jnp.float32),
        }

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, name)
        return matmul(x, params["w_x"], p.dtype)

    def inputs(params: Params, m: Array) -> dict[str, Array]:
        q, k, v = jnp.split(jax.nn.silu(m[..., :C]), [key_width, 2 * key_width], axis=-1)
        return {"q": l2_normalize(split_heads(q, H)), "k": l2_normalize(split_heads(k, H)),
                "v": split_heads(v, H), "beta": jax.nn.sigmoid(m[..., C:C + H])}

    def output(params: Params, o: Array, m: Array) -> Array:
        return gated_output(params, o, m[..., C + H:] if use_gate else None, norm_eps, p.dtype)

    return make_matrix_cell(family="delta_rule", init=init, project=project, inputs=inputs,
                            output=output, heads=H, key_dim=K, value_dim=V, hidden_size=D,
                            name=name, conv_channels=C, conv_size=size,
                            precision=p)
