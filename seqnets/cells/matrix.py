"""Matrix-state cells: a layer built around one of the matrix-state kernels.

DeltaNet, Gated DeltaNet, GLA and Mamba-2 share one shape of layer. Per step, on the
input ``x_t`` of width ``F``:

    p_t = x_t W_x (+ b)                        project: every affine map of the input at once
    c_t = conv(p_t[:C])                        the short causal convolution of the first C
                                               columns (`seqnets.cells.conv`), if any
    q_t, k_t, v_t, beta_t, g_t = inputs(c_t, p_t)     per head: (H, K), (H, K), (H, V), ...
    S_t = the family's update of S_{t-1}       (H, K, V) per batch row
    o_t = S_t^T (scale q_t)                    (H, V)
    y_t = output(o_t, c_t, p_t)                the output norm, gate and projection

with the update of the ``"delta_rule"`` family (`seqnets.ops.delta_rule`)::

    S <- exp(g_t) S;  S <- S + k_t (beta_t (v_t - S^T k_t))^T

or of the ``"gla"`` family (`seqnets.ops.gla`)::

    S <- diag(exp(g_t)) S + k_t v_t^T         (g per key, or one per head)

`make_matrix_cell` builds a `seqnets.cells.Cell` from the three cell-specific functions
(``project``, ``inputs``, ``output``): its ``step`` is the update above, one step at a
time (the definition), and its ``recurrence`` runs a whole sequence with the family's
kernel that `seqnets.ops.registry` picks (sequential, chunked, and for GLA parallel).
The carry is a dict: ``{"state": (batch, H, K, V)}``, plus ``"conv": (batch, conv_size -
1, C)`` (the last inputs of the convolution) when the cell has a convolution. Both are
zeros in ``initial_carry``, so a reset clears the matrix state and the convolution's
inputs alike, and a carry handed from one window to the next continues both.

Precision (`seqnets.cells.dtypes`): the cells' matmuls (``W_x``, ``W_o``) take their
operands in the compute dtype ``dtype`` and the outputs ``y_t`` are returned in it; the
rest (the convolution, the activations and norms, ``q, k, v, beta, g``, the state ``S``
and the kernels) runs in the state dtype, float32 (float64 in 64-bit mode): ``S``
accumulates a sum over the whole sequence, and a decay ``exp(g_t)`` near 1 is 1.0 in
bfloat16, as for the diagonal cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqnets.cells import conv
from seqnets.cells.base import Array, Carry, Cell, Params, Recurrence, make_cell, matmul
from seqnets.cells.dtypes import Precision
from seqnets.cells.dtypes import precision as make_precision
from seqnets.layers.norm import rms_norm
from seqnets.ops import delta_rule, gla
from seqnets.ops.masks import Steps

# The chunk length of the chunked kernels when `seqnets.scan` gets chunk_size=None: the
# kernels' own default, the size their benchmark measured (benchmarks/matrix_kernels.py).
DEFAULT_CHUNK = 64
FAMILIES = (delta_rule.FAMILY, gla.FAMILY)
# Full float32 products in the one-step update, as in the kernels.
HIGHEST = jax.lax.Precision.HIGHEST

Inputs = Callable[[Params, Array], dict[str, Array | None]]
Output = Callable[[Params, Array, Array], Array]


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
    """``x / sqrt(sum(x^2) + eps)`` over the last axis (flash-linear-attention's ``l2norm``)."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def split_heads(x: Array, heads: int) -> Array:
    """``(..., heads * d) -> (..., heads, d)``."""
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def merge_heads(x: Array) -> Array:
    """``(..., heads, d) -> (..., heads * d)``."""
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def delta_rule_step(S: Array, q: Array, k: Array, v: Array, beta: Array, g: Array | None,
                    scale: float) -> tuple[Array, Array]:
    """One step of the gated delta rule: ``S (B, H, K, V)``, ``q, k (B, H, K)``, ``v (B, H,
    V)``, ``beta, g (B, H)``; returns ``(S, o (B, H, V))``."""
    if g is not None:
        S = jnp.exp(g)[..., None, None] * S
    u = beta[..., None] * (v - jnp.einsum("bhkv,bhk->bhv", S, k, precision=HIGHEST))
    S = S + k[..., :, None] * u[..., None, :]
    return S, jnp.einsum("bhkv,bhk->bhv", S, scale * q, precision=HIGHEST)


def gla_step(S: Array, q: Array, k: Array, v: Array, g: Array | None,
             scale: float) -> tuple[Array, Array]:
    """One step of gated linear attention: ``g`` is ``(B, H, K)`` (per key), ``(B, H)``
    (per head) or None; returns ``(S, o (B, H, V))``."""
    if g is not None:
        decay = jnp.exp(g)
        S = (decay[..., None] if g.ndim == 3 else decay[..., None, None]) * S
    S = S + k[..., :, None] * v[..., None, :]
    return S, jnp.einsum("bhkv,bhk->bhv", S, scale * q, precision=HIGHEST)


def make_matrix_cell(
    *,
    family: str,
    init: Callable[[Array, int], Params],
    project: Callable[[Params, Array], Array],
    inputs: Inputs,
    output: Output,
    heads: int,
    key_dim: int,
    value_dim: int,
    hidden_size: int,
    name: str,
    conv_channels: int = 0,
    conv_size: int = 4,
    scale: float | None = None,
    precision: Precision | None = None,
) -> Cell:
    """Builds a `Cell` around a matrix-state family's kernels (module docstring).

    Args:
      family: ``"delta_rule"`` or ``"gla"``.
      init: ``(key, input_size) -> params``. With a convolution, ``params["conv_w"]`` is
        its ``(conv_size, conv_channels)`` kernel and ``params["conv_b"]``, if present,
        its ``(conv_channels,)`` bias.
      project: ``(params, x (..., input_size)) -> p (..., P)``, affine in ``x`` (cast to
        the state dtype).
      inputs: ``(params, m (..., P)) -> dict`` of the kernel's inputs, where ``m`` is
        ``p`` with its first ``conv_channels`` columns replaced by their convolution:
        ``q, k (..., H, K)``, ``v (..., H, V)``, ``g`` (``(..., H)``, or ``(..., H, K)``
        for GLA, or None) and, for the delta rule, ``beta (..., H)``. It must act on any
        leading axes (``(batch,)`` in ``step``, ``(time, batch)`` in a sequence).
      output: ``(params, o (..., H, V), m (..., P)) -> y (..., hidden_size)`` (cast to
        the compute dtype).
      heads: ``H`` of the state ``(batch, H, K, V)``.
      key_dim: ``K`` of the state.
      value_dim: ``V`` of the state.
      hidden_size: the width of ``y``.
      name: the cell's name.
      conv_channels: the number ``C`` of leading columns of ``p`` that the short causal
        convolution reads; 0 for none.
      conv_size: the convolution's width (its carry keeps ``conv_size - 1`` inputs).
      scale: multiplies ``q``; ``K ** -0.5`` when None, as in the kernels.
      precision: the cell's dtypes (`seqnets.cells.precision`); float32 when None.
        ``init``'s parameters are cast to ``param_dtype``, ``p`` and the kernel's inputs
        to the state dtype (the carry's), the outputs to the compute dtype; ``project`` and
        ``output`` should compute their matmuls with ``matmul(..., precision.dtype)``.

    Returns:
      A `Cell` whose ``recurrence`` is a `seqnets.cells.Recurrence` of ``family``.
    """
    if family not in FAMILIES:
        raise ValueError(f"make_matrix_cell: family must be one of {FAMILIES}; got {family!r}.")
    if conv_channels:
        check_conv_size(name, conv_size)
    scale = key_dim ** -0.5 if scale is None else float(scale)
    C = conv_channels
    p_ = make_precision() if precision is None else precision
    state_dtype = p_.state_dtype

    def initial_carry(batch_size: int) -> Carry:
        carry = {"state": p_.zeros((batch_size, heads, key_dim, value_dim))}
        if C:
            carry["conv"] = p_.zeros((batch_size, conv_size - 1, C))
        return carry

    def kernel_inputs(params: Params, m: Array) -> dict[str, Array | None]:
        # The kernels take one dtype, the state's (a bfloat16 parameter would promote
        # only what it touches).
        return {n: None if a is None else a.astype(state_dtype)
                for n, a in inputs(params, m).items()}

    def outputs(params: Params, o: Array, m: Array) -> Array:
        return p_.output(output(params, o, m))

    def mixed(p: Array, conved: Array) -> Array:
        # p with its first C columns convolved
        return conved if p.shape[-1] == C else jnp.concatenate([conved, p[..., C:]], axis=-1)

    def step(params: Params, carry: Carry, p: Array) -> tuple[Carry, Array]:
        new = {}
        m = p
        if C:
            conved, new["conv"] = conv.step(p[:, :C], carry["conv"], params["conv_w"],
                                            params.get("conv_b"))
            m = mixed(p, conved)
        x = kernel_inputs(params, m)
        if family == delta_rule.FAMILY:
            new["state"], o = delta_rule_step(carry["state"], x["q"], x["k"], x["v"],
                                              x["beta"], x.get("g"), scale)
        else:
            new["state"], o = gla_step(carry["state"], x["q"], x["k"], x["v"], x.get("g"),
                                       scale)
        return new, outputs(params, o, m)

    def run(kernel: Callable[..., tuple[Array, Array]], params: Params, p: Array, carry: Carry,
            steps: Steps, *, chunk_size: int | None = None,
            unroll: int | bool = 1) -> tuple[Carry, Array]:
        del unroll  # the kernels choose their own loops
        time, batch = p.shape[:2]
        if time == 0:  # the kernels refuse an empty sequence; nothing changes
            return carry, jnp.zeros((0, batch, hidden_size), p_.dtype)
        new = {}
        m = p
        if C:
            conved, new["conv"] = conv.sequence(p[..., :C], carry["conv"], params["conv_w"],
                                                params.get("conv_b"), steps)
            m = mixed(p, conved)
        x = kernel_inputs(params, m)

        def batch_major(a: Array | None) -> Array | None:
            return None if a is None else jnp.swapaxes(a, 0, 1)

        q, k, v, g = (batch_major(x.get(n)) for n in ("q", "k", "v", "g"))
        options = dict(scale=scale, initial_state=carry["state"],
                       chunk_size=DEFAULT_CHUNK if chunk_size is None else chunk_size,
                       reset=batch_major(steps.reset), valid=batch_major(steps.valid))
        if family == delta_rule.FAMILY:
            o, new["state"] = kernel(q, k, v, batch_major(x["beta"]), g, **options)
        else:
            o, new["state"] = kernel(q, k, v, g, **options)
        return new, outputs(params, jnp.swapaxes(o, 0, 1), m)

    return make_cell(init=init, initial_carry=initial_carry, project=project, step=step,
                     hidden_size=hidden_size, name=name,
                     recurrence=Recurrence(family, run), precision=precision)


def head_count(name: str, num_heads: int | None, preferred: int, **dims: int) -> int:
    """The number of heads: ``num_heads``, or when None the largest count up to
    ``preferred`` that divides every one of ``dims``. ValueError when a given count does
    not divide them."""
    if num_heads is None:
        return next(h for h in range(preferred, 0, -1) if all(d % h == 0 for d in dims.values()))
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{name}: num_heads must be a positive int or None; got {num_heads!r}.")
    for dim_name, dim in dims.items():
        if dim % num_heads:
            raise ValueError(f"{name}: num_heads={num_heads} does not divide {dim_name}={dim}; "
                             "pass a num_heads that divides it (or None for the default).")
    return num_heads


def expanded(name: str, hidden_size: int, factor: float, what: str) -> int:
    """``hidden_size * factor`` as a positive int; ValueError when it is not one."""
    size = hidden_size * factor
    if size < 1 or size != int(size):
        raise ValueError(f"{name}: hidden_size * {what} = {hidden_size} * {factor} = {size} "
                         f"must be a positive integer; pick another {what} or hidden_size.")
    return int(size)


def conv_init(key: Array, size: int, channels: int) -> Array:
    """The short convolution's kernel ``(size, channels)``, uniform in ``±size^-0.5``: the
    initialisation of PyTorch's depthwise ``nn.Conv1d`` (fan-in ``size``), which
    flash-linear-attention's ``ShortConvolution`` and Mamba's layers use."""
    bound = size ** -0.5
    return jax.random.uniform(key, (size, channels), jnp.float32, -bound, bound)


def log_uniform_dt_bias(key: Array, heads: int, dt_min: float, dt_max: float,
                        floor: float) -> Array:
    """``softplus^-1(dt)`` with ``dt`` log-uniform in ``[dt_min, dt_max]``, at least ``floor``
    (Mamba's ``dt_bias`` initialisation)."""
    log_dt = jax.random.uniform(key, (heads,), minval=jnp.log(dt_min), maxval=jnp.log(dt_max))
    dt = jnp.maximum(jnp.exp(log_dt), floor)
    return dt + jnp.log(-jnp.expm1(-dt))


def check_dt_range(name: str, dt_min: float, dt_max: float) -> None:
    if not 0.0 < dt_min <= dt_max:
        raise ValueError(f"{name} needs 0 < dt_min <= dt_max; got dt_min={dt_min}, "
                         f"dt_max={dt_max}.")


def check_conv_size(name: str, conv_size: Any) -> int:
    if isinstance(conv_size, bool) or not isinstance(conv_size, int) or conv_size < 2:
        raise ValueError(f"{name}: conv_size must be an int >= 2 (the short convolution keeps "
                         f"conv_size - 1 inputs in the carry); got {conv_size!r}.")
    return conv_size


def gated_output(params: Params, o: Array, gate: Array | None, eps: float, dtype: Any) -> Array:
    """``(RMSNorm(o_h) * swish(gate_h)) W_o``: each head's output ``o (..., H, V)`` RMS-
    normalised with the shared gain ``params["norm"] (V,)``, times ``swish`` of its gate
    ``(..., H * V)`` when there is one, the heads concatenated and projected by
    ``params["w_o"] (H * V, hidden)`` (flash-linear-attention's ``FusedRMSNormGated``
    followed by ``o_proj``), its operands in the compute dtype ``dtype``."""
    y = rms_norm(o, params["norm"], eps)
    if gate is not None:
        y = y * jax.nn.silu(split_heads(gate, o.shape[-2]))
    return matmul(merge_heads(y), params["w_o"], dtype)
