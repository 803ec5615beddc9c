"""The mLSTM of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory",
NeurIPS 2024, arXiv:2405.04517, section 2.3): a matrix memory per head, written with
exponential input gates, on the kernels of `seqnets.ops.mlstm`.

Per step, for each of the ``NH`` heads of ``d = H / NH`` units, from the input ``x_t``
alone (no gate reads ``h_{t-1}``, so the whole sequence can run in chunks)::

    q_t, k_t, v_t = x_t W_q + b_q,  x_t W_k + b_k,  x_t W_v + b_v     (d,) per head
    i~_t, f~_t = x_t w_i + b_i,  x_t w_f + b_f                        one scalar per head
    o_t = sigmoid(x_t W_o + b_o)                                      (H,)
    C_t = f_t C_{t-1} + i_t k_t v_t^T;   n_t = f_t n_{t-1} + i_t k_t   (d, d), (d,)
    h~_t = (C_t^T q_t / sqrt(d)) / max(|n_t . q_t / sqrt(d)|, 1)
    y_t = o_t * norm(h~_t)                                           norm: per head

with ``i_t = exp(i~_t)`` and ``f_t = sigmoid(f~_t)``. The paper scales ``k`` by
``1 / sqrt(d)``; scaling ``q`` instead (as NX-AI's kernels do) gives the same ``h~``.
``norm`` is a layer norm over each head's ``d`` units with a learned gain (NX-AI's
``MultiHeadLayerNorm``, no bias, eps 1e-5).

**The stabiliser.** As in the sLSTM (`seqnets.cells.slstm`), ``C`` and ``n`` are kept
scaled by ``exp(-m_t)``, ``m_t = max(log f_t + m_{t-1}, i~_t)``, so that ``exp`` never
overflows; ``max(|.|, 1)`` becomes ``max(|.|, exp(-m_t))`` and the scale cancels in
``h~``. `seqnets.ops.mlstm` computes exactly that (plus ``eps`` in the denominator), in
mode ``"sequential"`` (one step a loop iteration) or ``"chunked"`` (a chunk of steps
a loop iteration, the outputs inside a chunk by a masked quadratic form; its docstring
shows why the chunked stabiliser is the same max). The carry is the kernel's state
``(C (batch, NH, d, d), n (batch, NH, d), m (batch, NH))``, zeros at the start.

**Precision** (`seqnets.cells.dtypes`): the input projection takes its operands in the
compute dtype ``dtype`` and the outputs ``y_t`` are returned in it; the gates, the norm,
the kernel and its state run in the state dtype (float32, float64 in 64-bit mode), for
the reasons of the sLSTM's (`seqnets.cells.slstm`): ``m`` is a log scale.

**Initialisation**, following NX-AI's ``xlstm`` package (2.0.6, ``mLSTMCell``, ``mLSTMLayer``):
``W_q, W_k, W_v, W_o`` "small init" (normal, std ``sqrt(2 / (5 * input_size))``), their
biases zero; the gate weights ``w_i, w_f`` zero, ``b_f`` evenly spaced from 3 to 6
across the heads (forget gates from 0.95 to 0.998), ``b_i`` normal with std 0.1; the
norm's gain one. NX-AI's layer computes the gates from ``[q, k, v]`` inside its block;
this cell computes them from its input, as the paper's equations do
(`seqnets.layers.mlstm_block` follows NX-AI).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqnets.cells.base import (
    Array,
    Carry,
    Cell,
    Initializer,
    Params,
    Recurrence,
    cell_constructor,
    check_hidden_size,
    input_projection,
    make_cell,
)
from seqnets.cells.dtypes import check_x64, precision
from seqnets.cells.slstm import check_heads, small_init
from seqnets.ops.masks import Steps
from seqnets.ops.mlstm import FAMILY, mlstm_step, zeros_state

# The chunk length when `seqnets.scan` gets chunk_size=None: the kernel's own default,
# the size its benchmark measured (benchmarks/results/xlstm/latest.md).
DEFAULT_CHUNK = 64
NORM_EPS = 1e-5


def head_norm(h: Array, scale: Array, eps: float = NORM_EPS) -> Array:
    """Layer norm over each head's units: ``h (..., NH, d)`` -> ``(..., NH * d)``, times
    ``scale (NH * d,)``; no bias (NX-AI's ``MultiHeadLayerNorm``)."""
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
    normed = (h - mean) * jax.lax.rsqrt(var + eps)
    return normed.reshape(*h.shape[:-2], -1) * scale


def gate_biases(key: Array, heads: int) -> tuple[Array, Array]:
    """NX-AI's ``(b_i, b_f)``: ``b_i`` normal with std 0.1; ``b_f`` evenly spaced in [3, 6]."""
    return 0.1 * jax.random.normal(key, (heads,)), jnp.linspace(3.0, 6.0, heads)


def zero_state(batch: int, heads: int, d: int, dtype: Any = jnp.float32
               ) -> tuple[Array, Array, Array]:
    """The zero mLSTM state ``(C (batch, NH, d, d), n (batch, NH, d), m (batch, NH))`` of
    ``dtype``."""
    check_x64(dtype, "initial_carry")
    return zeros_state(batch, heads, d, d, dtype)


def run_kernel(kernel: Callable[..., Any], q: Array, k: Array, v: Array, i: Array, f: Array,
               state: Carry, steps: Steps, chunk_size: int | None, eps: float,
               ) -> tuple[Array, Carry]:
    """A registered mLSTM kernel on time-major inputs: ``q, k, v (time, batch, NH, d)``,
    ``i, f (time, batch, NH)``; returns ``h~ (time, batch, NH, d)`` and the state after
    each row's last valid step (the kernel's ``valid`` steps are identities)."""

    def batch_major(a: Array | None) -> Array | None:
        return None if a is None else jnp.swapaxes(a, 0, 1)

    h, state = kernel(*(batch_major(a) for a in (q, k, v, i, f)), initial_state=tuple(state),
                      eps=eps, chunk_size=DEFAULT_CHUNK if chunk_size is None else chunk_size,
                      reset=batch_major(steps.reset), valid=batch_major(steps.valid))
    return jnp.swapaxes(h, 0, 1), state


@cell_constructor
def mlstm(
    hidden_size: int,
    num_heads: int = 4,
    *,
    eps: float = 1e-6,
    input_init: Initializer = small_init,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An mLSTM cell (module docstring: equations, stabiliser, initialisation).

    Args:
      hidden_size: width ``H`` of the outputs; the heads' ``q, k, v`` have ``H / NH``
        units each.
      num_heads: the number ``NH`` of heads; it must divide ``hidden_size``.
      eps: added to the denominator of ``h~`` (`seqnets.ops.mlstm`).
      input_init: initializer of ``W_q``, ``W_k``, ``W_v`` and ``W_o`` (each
        ``(input_size, H)``).
      dtype: compute dtype of the input projection and of the outputs; ``param_dtype``
        when None. The gates, the kernel and the carry stay at least float32 (module
        docstring).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the ``"mlstm"`` family, modes ``"sequential"`` and ``"chunked"``
      (``"auto"``: the registry's rule). Parameters: ``w_x (input_size, 4H + 2NH)`` and
      ``b (4H + 2NH,)``, columns ``[q | k | v | i~ | f~ | o]``, and ``norm (H,)``.
      Carry: ``(C (batch, NH, d, d), n (batch, NH, d), m (batch, NH))``.
    """
    H = check_hidden_size(hidden_size)
    NH = check_heads("mlstm", H, num_heads)
    d = H // NH
    p = precision(dtype, param_dtype, where="mlstm")

    def init(key: Array, input_size: int) -> Params:
        k_q, k_k, k_v, k_o, k_b = jax.random.split(key, 5)
        w = [input_init(k, (input_size, H), jnp.float32) for k in (k_q, k_k, k_v)]
        w += [jnp.zeros((input_size, 2 * NH), jnp.float32), input_init(k_o, (input_size, H),
                                                                       jnp.float32)]
        b_i, b_f = gate_biases(k_b, NH)
        b = jnp.concatenate([jnp.zeros(3 * H), b_i, b_f, jnp.zeros(H)])
        return {"w_x": jnp.concatenate(w, axis=1), "b": b, "norm": jnp.ones((H,))}

    def split(projected: Array) -> tuple[Array, ...]:
        """``(..., 4H + 2NH)`` -> ``q, k, v (..., NH, d)``, ``i, f (..., NH)``, ``o (..., H)``."""
        q, k, v, i, f, o = jnp.split(projected, [H, 2 * H, 3 * H, 3 * H + NH, 3 * H + 2 * NH], axis=-1)
        heads = lambda a: a.reshape(*a.shape[:-1], NH, d)  # noqa: E731
        return heads(q), heads(k), heads(v), i, f, o

    def readout(params: Params, h: Array, o: Array) -> Array:
        return jax.nn.sigmoid(o) * head_norm(h, params["norm"])

    def step(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        q, k, v, i, f, o = split(projected)
        h, carry = mlstm_step(tuple(carry), q, k, v, i, f, eps)
        return carry, readout(params, h, o)

    def run(kernel: Callable[..., Any], params: Params, projected: Array, carry: Carry,
            steps: Steps, *, chunk_size: int | None = None, unroll: int | bool = 1,
            ) -> tuple[Carry, Array]:
        del unroll  # the kernels choose their own loops
        if projected.shape[0] == 0:  # the kernels need a step; nothing changes
            return carry, jnp.zeros((0, projected.shape[1], H), p.dtype)
        q, k, v, i, f, o = split(projected)
        h, carry = run_kernel(kernel, q, k, v, i, f, carry, steps, chunk_size, eps)
        return carry, p.output(readout(params, h, o))

    return make_cell(
        init=init,
        initial_carry=lambda batch: zero_state(batch, NH, d, p.state_dtype),
        project=input_projection("mlstm", p),
        step=step,
        hidden_size=H,
        name="mlstm",
        recurrence=Recurrence(FAMILY, run),
        precision=p,
    )
