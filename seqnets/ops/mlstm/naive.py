"""The mLSTM, step by step: the reference every kernel is tested against.

Written from the equations of Beck et al. (2024, 2025), per batch row and head, as in
`seqnets.ops.mlstm`'s docstring; readable above all, fast never::

    log_f = log_sigmoid(f_t);   m_t = max(log_f + m_{t-1}, i_t)
    f' = exp(log_f + m_{t-1} - m_t);   i' = exp(i_t - m_t)
    C_t = f' C_{t-1} + i' k_t v_t^T;   n_t = f' n_{t-1} + i' k_t
    q' = q_t * K ** -0.5
    h_t = (q'^T C_t) / (max(|q'^T n_t|, exp(-m_t)) + eps)

The masks say where sequences start and stop:

* ``reset[b, t]``: the state entering step t is the zero state ``(0, 0, 0)``;
* ``valid[b, t]`` False: step t leaves the state as it was; its inputs are never read
  (they may be NaN), and its output is whatever the unchanged state gives.

Sums are written as products and sums, not matmuls, so that nothing but the equations
decides what is computed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

State = tuple[Array, Array, Array]


def mlstm_step(state: State, q: Array, k: Array, v: Array, i: Array, f: Array,
               eps: float = 1e-6) -> tuple[Array, State]:
    """One step of the mLSTM.

    Args:
      state: ``(C (B, H, K, V), n (B, H, K), m (B, H))``.
      q, k: ``(B, H, K)``; v: ``(B, H, V)``; i, f: ``(B, H)`` gate pre-activations.
      eps: added to the denominator.

    Returns:
      ``(h (B, H, V), (C, n, m))``: the output and the new state.
    """
    C, n, m = state
    log_f = jax.nn.log_sigmoid(f)
    m_new = jnp.maximum(log_f + m, i)
    f_gate = jnp.exp(log_f + m - m_new)
    i_gate = jnp.exp(i - m_new)
    C = f_gate[..., None, None] * C + i_gate[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_gate[..., None] * n + i_gate[..., None] * k
    q = q * q.shape[-1] ** -0.5
    numerator = (q[..., :, None] * C).sum(-2)
    denominator = jnp.maximum(jnp.abs((q * n).sum(-1)), jnp.exp(-m_new)) + eps
    return numerator / denominator[..., None], (C, n, m_new)


def mlstm_naive(q: Array, k: Array, v: Array, i: Array, f: Array, *,
                initial_state: State | None = None, eps: float = 1e-6,
                reset: Array | None = None, valid: Array | None = None) -> tuple[Array, State]:
    """The mLSTM over a sequence, one `mlstm_step` a time step.

    Args:
      q, k: ``(B, T, H, K)``; v: ``(B, T, H, V)``; i, f: ``(B, T, H)``.
      initial_state: ``(C (B, H, K, V), n (B, H, K), m (B, H))``; zeros when None.
      eps: added to the denominator.
      reset, valid: ``(B, T)`` bool masks, as in the module docstring; None: no resets,
        every step valid.

    Returns:
      ``(h (B, T, H, V), (C, n, m))``: the outputs and the state after the last step.
    """
    B, T, H, K = q.shape
    if initial_state is None:
        initial_state = zeros_state(B, H, K, v.shape[-1], q.dtype)
    reset = jnp.zeros((B, T), bool) if reset is None else reset
    valid = jnp.ones((B, T), bool) if valid is None else valid

    def body(state, xs):
        q, k, v, i, f, reset, valid = xs
        state = tuple(jnp.where(_rows(reset, s), 0, s) for s in state)
        # Padded inputs may be NaN: zero them, or their NaN reaches the gradient through
        # the branch that the `where` below drops.
        q, k, v, i, f = (jnp.where(_rows(valid, x), x, 0) for x in (q, k, v, i, f))
        h, new = mlstm_step(state, q, k, v, i, f, eps)
        state = tuple(jnp.where(_rows(valid, s_new), s_new, s)
                      for s_new, s in zip(new, state, strict=True))
        return state, h

    xs = tuple(jnp.swapaxes(x, 0, 1) for x in (q, k, v, i, f, reset, valid))
    state, h = jax.lax.scan(body, tuple(initial_state), xs)
    return jnp.swapaxes(h, 0, 1), state


def zeros_state(batch: int, heads: int, key_size: int, value_size: int, dtype=jnp.float32) -> State:
    """The zero state ``(C (B, H, K, V), n (B, H, K), m (B, H))``."""
    return (jnp.zeros((batch, heads, key_size, value_size), dtype),
            jnp.zeros((batch, heads, key_size), dtype), jnp.zeros((batch, heads), dtype))


def _rows(mask: Array, x: Array) -> Array:
    """``mask (B,)`` shaped to broadcast against ``x (B, ...)``."""
    return mask.reshape(mask.shape + (1,) * (x.ndim - 1))
