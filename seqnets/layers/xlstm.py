"""The xLSTM blocks (Beck et al. 2024, section 2.4 and figures 10-11): residual blocks
around the mLSTM and the sLSTM, with their short causal convolution's inputs in the carry.

**mLSTM block** ("pre up-projection"), for ``x_t`` of width ``E`` and ``I = proj_factor * E``::

    [u_t | z_t] = LN(x_t) W_up                       (I,) each
    c_t = silu(conv(u)_t)                            causal, width conv_size, per channel
    q_t, k_t = c_t W_q, c_t W_k;   v_t = u_t W_v     block-diagonal, blocks of qkv_block_size
    [i~_t | f~_t] = [q_t, k_t, v_t] W_g + b_g        one scalar per head each
    h~_t = mLSTM(q, k, v, i~, f~)_t                  `seqnets.ops.mlstm`, NH heads of I / NH
    y_t = x_t + ((norm(h~_t) + s * c_t) * silu(z_t)) W_down

**sLSTM block** ("post up-projection": the cell at width ``E``, then a gated MLP)::

    a_t = LN(x_t);   c_t = silu(conv(a)_t)           (c_t = a_t when conv_size = 0)
    [i~ | f~] from c_t, [z~ | o~] from a_t           the sLSTM cell's W_x (`seqnets.slstm`)
    x'_t = x_t + norm(sLSTM(...)_t)                  norm: per head
    y_t = x'_t + (gelu(b_t W_gate) * (b_t W_up)) W_down,   b_t = LN(x'_t)

``LN`` is a layer norm without bias (`seqnets.layers.norm.layer_norm`), ``norm`` a layer
norm over each head's units (`seqnets.cells.mlstm.head_norm`), ``s`` a learned skip
gain, ``gelu`` the exact one.

**Each block is a `seqnets.cells.Cell`**, not a layer that calls `seqnets.scan`: its
convolution reads the last ``conv_size - 1`` inputs, which must live in the carry for a
window to continue the previous one (truncated BPTT, streaming) and for a reset to clear
them, and a Cell's carry is where `seqnets.scan` keeps state. So the blocks get lengths,
resets, reverse, ``checkpoint``, `seqnets.stack`, the fused TBPTT epoch and data
parallelism from the runner, as every cell does. ``project`` holds what needs no carry
(the pre-norm, the up-projection); the family's ``run`` does the rest for a whole
sequence: `seqnets.cells.conv.sequence`, then the mLSTM kernel the registry picked
(``"sequential"`` or ``"chunked"``), or the sLSTM step in the ``"nonlinear"`` family's
loop with everything else (gate inputs, norms, MLP) outside the loop. ``step`` is the
same block one token at a time: `seqnets.cells.conv.step`, then one step of the cell.
The carry is a dict: ``{"conv": (batch, conv_size - 1, channels), "state": ...}``.

**Initialisation**, after NX-AI's ``xlstm`` (2.0.6): the gains one; ``W_up``, ``W_q``,
``W_k``, ``W_v`` and the MLP's up-projections "small init" (std ``sqrt(2 / (5E))``);
``W_down`` and the MLP's down-projection normal with std ``2 / (depth * sqrt(E))``
("Wang init", ``depth`` the number of blocks in the model); the convolution uniform in
``±conv_size^-0.5`` (PyTorch's ``Conv1d``); the mLSTM gates as `seqnets.mlstm` (weights
zero, ``b_f`` from 3 to 6, ``b_i`` std 0.1); ``s`` one. NX-AI rounds ``I`` and the MLP
width up to multiples of 64 (GPU tiles); these blocks take ``proj_factor * E`` and
``ceil(4/3 * E)`` as they are (pass ``mlp_size`` to match).

**Precision** (`seqnets.cells.dtypes`): as the cells, each block takes ``dtype`` (the
compute dtype: the matmuls' operands and the block's outputs) and ``param_dtype``; the
residual stream inside the block, the norms, the convolution, the gates and the carry
run in the state dtype (float32, float64 in 64-bit mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqnets.cells import conv
from seqnets.cells.base import (
    Array,
    Carry,
    Cell,
    Params,
    Recurrence,
    cell_constructor,
    check_hidden_size,
    check_positive_int,
    make_cell,
    matmul,
)
from seqnets.cells.dtypes import einsum, precision
from seqnets.cells.mlstm import gate_biases, head_norm, run_kernel, zero_state
from seqnets.cells.slstm import SLSTMState, check_heads, slstm, small_init
from seqnets.layers.norm import layer_norm
from seqnets.ops import nonlinear
from seqnets.ops.masks import Steps
from seqnets.ops.mlstm import FAMILY as MLSTM_FAMILY
from seqnets.ops.mlstm import mlstm_step


def wang_init(key: Array, shape: tuple[int, int], width: int, depth: int) -> Array:
    """Normal with std ``2 / (depth * sqrt(width))`` (NX-AI's ``wang_init_``)."""
    return jax.random.normal(key, shape) * (2.0 / (depth * math.sqrt(width)))


def conv_params(key: Array, size: int, channels: int) -> dict[str, Array]:
    """A depthwise causal convolution's ``conv_w (size, channels)`` and ``conv_b
    (channels,)``, uniform in ``±size^-0.5`` (PyTorch's ``Conv1d``, fan-in ``size``)."""
    k_w, k_b = jax.random.split(key)
    bound = size**-0.5
    return {"conv_w": jax.random.uniform(k_w, (size, channels), minval=-bound, maxval=bound),
            "conv_b": jax.random.uniform(k_b, (channels,), minval=-bound, maxval=bound)}


def blockwise(x: Array, w: Array, dtype: Any) -> Array:
    """``x (..., G * b) @ blockdiag(w)`` for ``w (G, b, b)``: each block of ``b`` features
    mixes only within itself (NX-AI's ``LinearHeadwiseExpand``); ``(..., G * b)`` in
    `seqnets.cells.dtypes.accumulation_dtype` of ``dtype`` (float32 for bfloat16)."""
    groups, size, _ = w.shape
    y = einsum("...gi,gio->...go", x.reshape(*x.shape[:-1], groups, size), w, dtype)
    return y.reshape(x.shape)


def check_width(name: str, x: Array, width: int) -> None:
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != width:
        raise ValueError(f"{name}: the block's inputs must have its width {width} as their last "
                         f"axis (it adds them to its outputs); got shape {jnp.shape(x)}.")


def check_init_width(name: str, input_size: int, width: int) -> None:
    if input_size != width:
        raise ValueError(f"{name}: the input size must be the block's width {width}, since the "
                         f"block adds its input to its output; got {input_size}. Project the "
                         f"inputs to {width} features first.")


@cell_constructor
def mlstm_block(
    width: int,
    num_heads: int = 4,
    *,
    proj_factor: float = 2.0,
    conv_size: int = 4,
    qkv_block_size: int = 4,
    eps: float = 1e-6,
    depth: int = 1,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """The mLSTM block (module docstring) as a `Cell` of the ``"mlstm"`` family.

    Args:
      width: ``E``, the block's input and output features.
      num_heads: the mLSTM's heads; they split the ``I = proj_factor * E`` inner units.
      proj_factor: the up-projection's factor (2 in the paper).
      conv_size: the causal convolution's width (at least 2; 4 in the paper).
      qkv_block_size: the size of the diagonal blocks of ``W_q``, ``W_k``, ``W_v``.
      eps: the mLSTM's denominator ``eps`` (`seqnets.ops.mlstm`).
      depth: the number of blocks in the model (scales ``W_down``'s initialisation).
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The kernel, the gates, the norms and the carry stay at least float32.
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell`, ``hidden_size = E``, modes ``"sequential"`` and ``"chunked"``. Carry:
      ``{"conv": (batch, conv_size - 1, I), "state": (C, n, m)}`` with the mLSTM state
      ``C (batch, NH, d, d)``, ``n (batch, NH, d)``, ``m (batch, NH)``, ``d = I / NH``.
    """
    name = "mlstm_block"
    E = check_hidden_size(width)
    inner = proj_factor * E
    if inner != int(inner) or inner < 1:
        raise ValueError(f"{name}: proj_factor * width = {proj_factor} * {E} = {inner} must be a "
                         "positive integer; pick another proj_factor or width.")
    inner = int(inner)
    NH = check_heads(name, inner, num_heads)
    d = inner // NH
    bs = check_positive_int(qkv_block_size, "qkv_block_size", name)
    if inner % bs:
        raise ValueError(f"{name}: qkv_block_size={bs} must divide the inner width "
                         f"proj_factor * width = {inner}.")
    K = check_positive_int(conv_size, "conv_size", name)
    if K < 2:
        raise ValueError(f"{name}: conv_size must be at least 2; got {K}.")
    depth = check_positive_int(depth, "depth", name)
    p = precision(dtype, param_dtype, where=name)
    state = p.state_dtype

    def init(key: Array, input_size: int) -> Params:
        check_init_width(name, input_size, E)
        ks = jax.random.split(key, 7)
        b_i, b_f = gate_biases(ks[5], NH)
        # small init with the block's width as the fan-in, as NX-AI's q, k, v projections
        qkv = lambda k: jax.random.normal(k, (inner // bs, bs, bs)) * math.sqrt(2 / (5 * E))  # noqa: E731
        return {
            "norm": jnp.ones((E,)), "w_up": small_init(ks[0], (E, 2 * inner)),
            **conv_params(ks[1], K, inner),
            "w_q": qkv(ks[2]), "w_k": qkv(ks[3]), "w_v": qkv(ks[4]),
            "w_gates": jnp.zeros((3 * inner, 2 * NH)), "b_gates": jnp.concatenate([b_i, b_f]),
            "out_norm": jnp.ones((inner,)), "skip": jnp.ones((inner,)),
            "w_down": wang_init(ks[6], (inner, E), E, depth),
        }

    def project(params: Params, x: Array) -> Array:
        """``(..., E) -> (..., E + 2I)``: ``[x | u | z]``."""
        check_width(name, x, E)
        x = x.astype(state)
        return jnp.concatenate([x, matmul(layer_norm(x, params["norm"]), params["w_up"],
                                          p.dtype)], axis=-1)

    def mixer_inputs(params: Params, u: Array, c: Array) -> tuple[Array, ...]:
        """``q, k, v (..., NH, d)`` and ``i~, f~ (..., NH)`` from ``u`` and ``c = silu(conv(u))``."""
        q, k, v = (blockwise(a, params[w], p.dtype)
                   for a, w in ((c, "w_q"), (c, "w_k"), (u, "w_v")))
        gates = matmul(jnp.concatenate([q, k, v], axis=-1), params["w_gates"], p.dtype)
        i, f = jnp.split(gates + params["b_gates"], 2, axis=-1)
        heads = lambda a: a.reshape(*a.shape[:-1], NH, d)  # noqa: E731
        return heads(q), heads(k), heads(v), i, f

    def output(params: Params, x: Array, h: Array, c: Array, z: Array) -> Array:
        gated = (head_norm(h, params["out_norm"]) + params["skip"] * c) * jax.nn.silu(z)
        return x + matmul(gated, params["w_down"], p.dtype)

    def step(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        x, u, z = jnp.split(projected, [E, E + inner], axis=-1)
        c, buffer = conv.step(u, carry["conv"], params["conv_w"], params["conv_b"])
        c = jax.nn.silu(c)
        h, state = mlstm_step(tuple(carry["state"]), *mixer_inputs(params, u, c), eps)
        return {"conv": buffer, "state": state}, output(params, x, h, c, z)

    def run(kernel: Callable[..., Any], params: Params, projected: Array, carry: Carry,
            steps: Steps, *, chunk_size: int | None = None, unroll: int | bool = 1,
            ) -> tuple[Carry, Array]:
        del unroll  # the kernels choose their own loops
        if projected.shape[0] == 0:
            return carry, jnp.zeros((0, projected.shape[1], E), p.dtype)
        x, u, z = jnp.split(projected, [E, E + inner], axis=-1)
        c, buffer = conv.sequence(u, carry["conv"], params["conv_w"], params["conv_b"], steps)
        c = jax.nn.silu(c)
        h, state = run_kernel(kernel, *mixer_inputs(params, u, c), carry["state"], steps,
                              chunk_size, eps)
        return {"conv": buffer, "state": state}, p.output(output(params, x, h, c, z))

    def initial_carry(batch: int) -> Carry:
        return {"conv": p.zeros((batch, K - 1, inner)),
                "state": zero_state(batch, NH, d, state)}

    return make_cell(init=init, initial_carry=initial_carry, project=project, step=step,
                     hidden_size=E, name=name, recurrence=Recurrence(MLSTM_FAMILY, run),
                     precision=p)


@cell_constructor
def slstm_block(
    width: int,
    num_heads: int = 4,
    *,
    conv_size: int = 4,
    forget_gate: str = "sigmoid",
    mlp_size: int | None = None,
    block_index: int = 0,
    depth: int = 1,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """The sLSTM block (module docstring) as a `Cell` of the ``"nonlinear"`` family.

    Args:
      width: ``E``, the block's input and output features and the sLSTM's width.
      num_heads: the sLSTM's heads; the number must divide ``width``.
      conv_size: the causal convolution before the input and forget gates (4 in the
        paper); 0 for none.
      forget_gate: the sLSTM's forget gate, ``"sigmoid"`` or ``"exp"`` (`seqnets.slstm`).
      mlp_size: the gated MLP's hidden width; ``ceil(4/3 * E)`` when None.
      block_index: the block's position in the model, from 0: NX-AI's forget-gate bias
        power ``0.3 + 1.3 * block_index / (depth - 1)``.
      depth: the number of blocks in the model (the down-projection's initialisation).
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The gate math, the norms, the MLP's activations and the carry stay at least
        float32 (`seqnets.cells.slstm`).
      param_dtype: the parameters' dtype (the cell's too).

    Returns:
      A `Cell`, ``hidden_size = E``, mode ``"sequential"`` (the sLSTM is not linear in
      its carry). Carry: ``{"conv": (batch, conv_size - 1, E), "state": SLSTMState}``
      (no ``"conv"`` when ``conv_size`` is 0), the `seqnets.cells.SLSTMState` fields
      ``(batch, E)``.
    """
    name = "slstm_block"
    E = check_hidden_size(width)
    NH = check_heads(name, E, num_heads)
    d = E // NH
    if isinstance(conv_size, bool) or not isinstance(conv_size, int) or conv_size == 1 \
            or conv_size < 0:
        raise ValueError(f"{name}: conv_size must be 0 (no convolution) or at least 2; "
                         f"got {conv_size!r}.")
    K = conv_size
    M = math.ceil(4 * E / 3) if mlp_size is None else check_positive_int(mlp_size, "mlp_size", name)
    depth = check_positive_int(depth, "depth", name)
    if isinstance(block_index, bool) or not isinstance(block_index, int) \
            or not 0 <= block_index < depth:
        raise ValueError(f"{name}: block_index must be an int in [0, depth) = [0, {depth}); "
                         f"got {block_index!r}.")
    p = precision(dtype, param_dtype, where=name)
    state = p.state_dtype
    cell = slstm(E, NH, forget_gate=forget_gate,
                 forget_power=0.3 + 1.3 * (block_index / (depth - 1) if depth > 1 else 0.0),
                 dtype=dtype, param_dtype=param_dtype)

    def init(key: Array, input_size: int) -> Params:
        check_init_width(name, input_size, E)
        k_conv, k_cell, k_up, k_down = jax.random.split(key, 4)
        return {
            "norm": jnp.ones((E,)), **(conv_params(k_conv, K, E) if K else {}),
            "cell": cell.init(k_cell, E), "out_norm": jnp.ones((E,)),
            "mlp_norm": jnp.ones((E,)), "w_up": small_init(k_up, (E, 2 * M)),
            "w_down": wang_init(k_down, (M, E), E, depth),
        }

    def project(params: Params, x: Array) -> Array:
        """``(..., E) -> (..., 2E)``: ``[x | LN(x)]``."""
        check_width(name, x, E)
        x = x.astype(state)
        return jnp.concatenate([x, layer_norm(x, params["norm"])], axis=-1)

    def gate_inputs(params: Params, a: Array, c: Array) -> Array:
        """The cell's pre-activations ``(..., 4E)`` (its column order): ``i, f`` from ``c``,
        ``z, o`` from ``a``."""
        w = params["cell"]["w_x"].reshape(E, NH, 4, d)
        from_c = matmul(c, w[:, :, :2].reshape(E, 2 * E), p.dtype)
        from_a = matmul(a, w[:, :, 2:].reshape(E, 2 * E), p.dtype)
        both = jnp.concatenate([from_c.reshape(*c.shape[:-1], NH, 2, d),
                                from_a.reshape(*a.shape[:-1], NH, 2, d)], axis=-2)
        return p.cast_state(both.reshape(*c.shape[:-1], 4 * E) + params["cell"]["b"])

    def mlp(params: Params, x: Array) -> Array:
        b = layer_norm(x, params["mlp_norm"])
        gate, up = jnp.split(matmul(b, params["w_up"], p.dtype), 2, axis=-1)
        return x + matmul(jax.nn.gelu(gate, approximate=False) * up, params["w_down"], p.dtype)

    def output(params: Params, x: Array, h: Array) -> Array:
        return mlp(params, x + head_norm(h.reshape(*h.shape[:-1], NH, d), params["out_norm"]))

    def step(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        x, a = jnp.split(projected, 2, axis=-1)
        new = {}
        c = a
        if K:
            c, new["conv"] = conv.step(a, carry["conv"], params["conv_w"], params["conv_b"])
            c = jax.nn.silu(c)
        new["state"], _ = cell.step(params["cell"], carry["state"], gate_inputs(params, a, c))
        # The carry's h, in the state dtype: the cell's output is rounded to the compute dtype.
        return new, output(params, x, new["state"].h)

    def run(kernel: Callable[..., Any], params: Params, projected: Array, carry: Carry,
            steps: Steps, *, chunk_size: int | None = None, unroll: int | bool = 1,
            ) -> tuple[Carry, Array]:
        del chunk_size  # one mode: sequential
        x, a = jnp.split(projected, 2, axis=-1)
        new = {}
        c = a
        if K:
            c, new["conv"] = conv.sequence(a, carry["conv"], params["conv_w"], params["conv_b"],
                                           steps)
            c = jax.nn.silu(c)

        def cell_step(state: SLSTMState, pre: Array) -> tuple[SLSTMState, Array]:
            state, _ = cell.step(params["cell"], state, pre)
            return state, state.h  # the state dtype's h, as in step

        # A reset restores the zero state; zeros_like keeps it varying as the carry does
        # under shard_map.
        h, new["state"] = kernel(cell_step, carry["state"], gate_inputs(params, a, c),
                                 initial=jax.tree.map(jnp.zeros_like, carry["state"]),
                                 valid=steps.valid, reset=steps.reset, unroll=unroll)
        return new, p.output(output(params, x, h))

    def initial_carry(batch: int) -> Carry:
        carry: dict[str, Any] = {"state": cell.initial_carry(batch)}
        if K:
            carry["conv"] = p.zeros((batch, K - 1, E))
        return carry

    return make_cell(init=init, initial_carry=initial_carry, project=project, step=step,
                     hidden_size=E, name=name, recurrence=Recurrence(nonlinear.FAMILY, run),
                     precision=p)


__all__ = ["mlstm_block", "slstm_block"]
