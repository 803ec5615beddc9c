"""The sLSTM of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory",
NeurIPS 2024, arXiv:2405.04517, section 2.2): a scalar memory with exponential gating,
a normaliser state and memory mixing within heads.

Per step, from the input ``x_t`` and the previous output ``h_{t-1}``, with the hidden
units split into ``NH`` heads of ``d = H / NH`` units and the recurrent matrices ``R``
block-diagonal by head (a head's gates read only that head's ``h``)::

    [i~ | f~ | z~ | o~] = x_t W_x + b + h_{t-1} R        per head: (d,) @ (d, 4d)
    z_t = tanh(z~_t);   o_t = sigmoid(o~_t)
    i_t = exp(i~_t);    f_t = sigmoid(f~_t)  or  exp(f~_t)     (forget_gate="sigmoid" | "exp")
    c_t = f_t c_{t-1} + i_t z_t
    n_t = f_t n_{t-1} + i_t
    h_t = o_t c_t / n_t

**The stabiliser.** ``exp(i~)`` overflows float32 from ``i~`` near 89. The cell keeps
``c`` and ``n`` scaled by ``exp(-m_t)``, with ``log f_t`` = ``log_sigmoid(f~_t)`` (or
``f~_t``)::

    m_t = max(log f_t + m_{t-1}, i~_t)        (m_t = i~_t where n_{t-1} = 0)
    i'_t = exp(i~_t - m_t);   f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t z_t;   n_t = f'_t n_{t-1} + i'_t;   h_t = o_t c_t / n_t

It is exact, not an approximation: by induction the stored ``(c_t, n_t)`` are the
paper's ``(c_t, n_t)`` times ``exp(-m_t)``, whatever the ``m``'s are, and ``h_t`` reads
only their ratio, so the factor cancels. The ``m`` chosen is the one that keeps every
number in range: it is the larger of the two exponents, so ``i'`` and ``f'`` lie in
``(0, 1]`` and one of them is 1. Where ``n_{t-1} = 0`` (a fresh state: ``initial_carry``
and every reset) the previous state contributes nothing, any ``m`` is exact, and
``m_t = i~_t`` makes ``i'_t = 1`` (NX-AI's CUDA kernel does the same); the plain max
with ``m_0 = 0`` would give ``i' = exp(i~ - 0)``, which underflows to 0 for ``i~`` below
about -104, and ``h = 0 / 0``. So ``n_t >= 1`` after the first step, ``c_t / n_t`` is a
weighted mean of ``tanh`` values and ``|h_t| <= 1``, for any pre-activations.

The carry is `SLSTMState` ``(c, n, m, h)``, each ``(batch, H)``, zeros at the start: the
stabilised ``c, n``, the stabiliser ``m`` and the output ``h`` that the next step's
gates read. The update is not linear in the carry, so the cell runs sequentially.

**Precision** (`seqnets.cells.dtypes`): the matmuls (``x_t W_x``, ``h_{t-1} R``) take their
operands in the compute dtype ``dtype``, and the outputs ``h_t`` are returned in it; the
gate and state update above runs in the state dtype (float32, float64 in 64-bit mode),
unlike the LSTM's gates. ``m`` is a log scale that grows with the inputs and the time
since a reset, and the update subtracts such scales: at ``m = 100`` bfloat16's spacing is
0.5, so ``exp(log f_t + m_{t-1} - m_t)`` computed in bfloat16 could be off by a factor
``exp(0.5)``.

**Initialisation**, following NX-AI's ``xlstm`` package (2.0.6, ``sLSTMCell``,
``sLSTMLayer``), which the paper leaves to its code:

* ``W_x``: the "small init" of Nguyen & Salazar (2019), normal with std
  ``sqrt(2 / (5 * input_size))``; ``R``: zeros (``recurrent_weight_init="zeros"``);
* biases: zero, except the forget gate's "power law" (``powerlaw_blockdependent``):
  unit ``j`` of every head gets ``5 - 12 * (j / (d - 1)) ** forget_power``, from 5 down
  to -7 (``sigmoid`` from 0.993 to 0.001: a spread of time scales). NX-AI sets
  ``forget_power = 0.3 + 1.3 * block / (blocks - 1)`` for block ``block`` of a stack
  (`seqnets.layers.slstm_block` does); a lone cell uses 0.3. With ``forget_gate="exp"``
  the bias is ``log_sigmoid`` of those values, so that both options start from the same
  forget gates.

NX-AI's layer projects the input head-wise (block-diagonal ``W_x`` too); this cell, like
the paper's equations, reads the whole input in every gate.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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
    check_positive_int,
    input_projection,
    make_cell,
)
from seqnets.cells.dtypes import einsum, precision

FORGET_GATES = ("sigmoid", "exp")


class SLSTMState(NamedTuple):
    """The sLSTM's carry; every field is ``(batch, H)``.

    Attributes (in the cell's state dtype, float32 by default):
      c: the cell state, scaled by ``exp(-m)``.
      n: the normaliser state, scaled by ``exp(-m)``; 0 marks a fresh state.
      m: the stabiliser (a log scale).
      h: the last output, which the next step's gates read.
    """

    c: Array
    n: Array
    m: Array
    h: Array


def small_init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    """Normal with std ``sqrt(2 / (5 * shape[0]))`` (Nguyen & Salazar 2019, "small init"),
    the input projections' initialisation in NX-AI's ``xlstm``."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(2.0 / (5.0 * shape[0])).astype(dtype)


def powerlaw_forget_bias(head_dim: int, power: float) -> Array:
    """``5 - 12 * (j / (d - 1)) ** power`` for ``j = 0 .. d - 1`` (NX-AI's
    ``powerlaw_blockdependent``); ``(5,)`` for ``d = 1``."""
    x = jnp.arange(head_dim, dtype=jnp.float32) / max(head_dim - 1, 1)
    return 5.0 - 12.0 * x**power


def check_heads(name: str, hidden_size: int, num_heads: int) -> int:
    """``num_heads`` as an int; ValueError unless it is positive and divides ``hidden_size``."""
    num_heads = check_positive_int(num_heads, "num_heads", name)
    if hidden_size % num_heads:
        raise ValueError(f"{name}: num_heads={num_heads} must divide hidden_size={hidden_size}; "
                         "pass a num_heads that divides it.")
    return num_heads


def slstm_gates(pre: Array, state: SLSTMState, exp_forget: bool) -> SLSTMState:
    """The stabilised gate and state update, elementwise.

    Args:
      pre: ``(batch, NH, 4, d)`` pre-activations, gates ``[i~, f~, z~, o~]``.
      state: the carry, each field ``(batch, NH, d)``.
      exp_forget: ``f = exp(f~)`` instead of ``sigmoid(f~)``.

    Returns:
      The new `SLSTMState`, fields ``(batch, NH, d)``.
    """
    i_pre, f_pre, z_pre, o_pre = (pre[..., g, :] for g in range(4))
    log_f = f_pre if exp_forget else jax.nn.log_sigmoid(f_pre)
    # A fresh state (n = 0) holds nothing to keep in range: start m at this step's input
    # gate, so that i' = 1 (module docstring).
    fresh = state.n == 0
    m = jnp.where(fresh, i_pre, jnp.maximum(log_f + state.m, i_pre))
    i_gate = jnp.exp(i_pre - m)
    # A fresh state's f' multiplies zeros; -inf makes it 0 rather than exp of a large
    # exponent (inf * 0 = NaN), and keeps its gradient 0.
    f_gate = jnp.exp(jnp.where(fresh, -jnp.inf, log_f + state.m - m))
    c = f_gate * state.c + i_gate * jnp.tanh(z_pre)
    n = f_gate * state.n + i_gate
    h = jax.nn.sigmoid(o_pre) * c / n
    return SLSTMState(c, n, m, h)


def recurrent(h: Array, r: Array, dtype: Any) -> Array:
    """``h (batch, H) @ R`` with ``R`` block-diagonal: ``r (NH, d, 4d)`` holds the heads'
    blocks; returns ``(batch, 4H)``, columns ordered (head, gate, unit). The operands are
    in ``dtype``, the sums in `seqnets.cells.dtypes.accumulation_dtype` (float32, or
    float64 for float64)."""
    heads, d, _ = r.shape
    hr = einsum("bnd,nde->bne", h.reshape(h.shape[0], heads, d), r, dtype)
    return hr.reshape(h.shape[0], -1)


@cell_constructor
def slstm(
    hidden_size: int,
    num_heads: int = 4,
    *,
    forget_gate: str = "sigmoid",
    forget_power: float = 0.3,
    input_init: Initializer = small_init,
    recurrent_init: Initializer = initializers.zeros,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Cell:
    """An sLSTM cell (module docstring: equations, stabiliser, initialisation).

    Args:
      hidden_size: width ``H`` of the outputs and of each state.
      num_heads: the number ``NH`` of heads; it must divide ``hidden_size``. The recurrent
        matrices mix units within a head only.
      forget_gate: ``"sigmoid"`` (the default, as NX-AI's kernels) or ``"exp"``.
      forget_power: the power of the forget-gate bias initialisation (0.3 for a lone
        cell; NX-AI's stacks raise it with the block's depth).
      input_init: initializer of ``w_x``, ``(input_size, 4H)``.
      recurrent_init: initializer of each head's recurrent block ``(d, 4d)``.
      dtype: compute dtype of the matmuls and of the outputs; ``param_dtype`` when None.
        The gate math and the carry stay at least float32 (module docstring).
      param_dtype: the parameters' dtype.

    Returns:
      A `Cell` of the ``"nonlinear"`` family. Parameters: ``w_x (input_size, 4H)``,
      ``r (NH, d, 4d)``, ``b (4H,)``; the ``4H`` columns are ordered (head, gate, unit)
      with gates ``[i, f, z, o]``. Carry: `SLSTMState` ``(c, n, m, h)``, each ``(batch, H)``.
    """
    H = check_hidden_size(hidden_size)
    NH = check_heads("slstm", H, num_heads)
    d = H // NH
    if forget_gate not in FORGET_GATES:
        raise ValueError(f"slstm: forget_gate must be one of {FORGET_GATES}; got {forget_gate!r}.")
    exp_forget = forget_gate == "exp"
    p = precision(dtype, param_dtype, where="slstm")

    def init(key: Array, input_size: int) -> Params:
        k_x, k_r = jax.random.split(key)
        f_bias = powerlaw_forget_bias(d, forget_power)
        if exp_forget:
            f_bias = jax.nn.log_sigmoid(f_bias)
        b = jnp.zeros((NH, 4, d), jnp.float32).at[:, 1].set(f_bias)
        return {
            "w_x": input_init(k_x, (input_size, 4 * H), jnp.float32),
            "r": jnp.stack([recurrent_init(k, (d, 4 * d), jnp.float32)
                            for k in jax.random.split(k_r, NH)]),
            "b": b.reshape(4 * H),
        }

    def initial_carry(batch_size: int) -> SLSTMState:
        return SLSTMState(*(p.zeros((batch_size, H)) for _ in range(4)))

    def step(params: Params, carry: SLSTMState, projected: Array) -> tuple[SLSTMState, Array]:
        batch = projected.shape[0]
        pre = p.cast_state(projected + recurrent(carry.h, params["r"], p.dtype))
        heads = SLSTMState(*(s.reshape(batch, NH, d) for s in carry))
        new = slstm_gates(pre.reshape(batch, NH, 4, d), heads, exp_forget)
        new = SLSTMState(*(s.reshape(batch, H) for s in new))
        return new, new.h

    return make_cell(
        init=init,
        initial_carry=initial_carry,
        project=input_projection("slstm", p),
        step=step,
        hidden_size=H,
        name="slstm",
        precision=p,
    )
