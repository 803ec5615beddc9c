"""The mLSTM kernel that takes one `lax.scan` iteration a time step.

The equations are `seqnets.ops.mlstm`'s. The gate arithmetic that needs no state
(``log_sigmoid(f)``, the query's scale, the masks) is done once for the whole sequence
before the loop; the loop body updates ``(C, n, m)`` and reads ``h_t`` from the new state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

State = tuple[Array, Array, Array]


def mask_inputs(q: Array, k: Array, v: Array, i: Array, f: Array,
                valid: Array | None) -> tuple[Array, Array, Array, Array, Array]:
    """The inputs as the kernels use them: ``(q * K ** -0.5, k, v, i, log_sigmoid(f))``.

    A step where ``valid`` is False becomes an exact identity on the state: ``log_f = 0``
    keeps ``m`` and gives ``f' = 1``, ``i = -inf`` gives ``i' = 0``, and its ``q, k, v``
    are zeros. Its inputs are replaced before any arithmetic, so that a NaN or inf there
    reaches neither the outputs nor the gradients.
    """
    if valid is not None:
        rows = valid[:, :, None]
        q, k, v = (jnp.where(rows[..., None], x, 0) for x in (q, k, v))
        i = jnp.where(rows, i, -jnp.inf)
        f = jnp.where(rows, f, 0)
    log_f = jax.nn.log_sigmoid(f)
    if valid is not None:
        log_f = jnp.where(valid[:, :, None], log_f, 0)
    return q * q.shape[-1] ** -0.5, k, v, i, log_f


def mlstm_sequential(q: Array, k: Array, v: Array, i: Array, f: Array, *,
                     initial_state: State, eps: float = 1e-6, chunk_size: int = 64,
                     reset: Array | None = None, valid: Array | None = None,
                     ) -> tuple[Array, State]:
    """The mLSTM, one loop iteration a step; the signature of every registered kernel.

    Args:
      q, k: ``(B, T, H, K)``; v: ``(B, T, H, V)``; i, f: ``(B, T, H)``.
      initial_state: ``(C (B, H, K, V), n (B, H, K), m (B, H))``.
      eps: added to the denominator.
      chunk_size: unused (the chunked kernel's; kept so that every kernel has one signature).
      reset, valid: ``(B, T)`` bool or None, as in `seqnets.ops.mlstm`.

    Returns:
      ``(h (B, T, H, V), (C, n, m))``.
    """
    del chunk_size
    q, k, v, i, log_f = mask_inputs(q, k, v, i, f, valid)
    xs = (q, k, v, i, log_f) + (() if reset is None else (reset,))

    def body(state, x):
        C, n, m = state
        q, k, v, i, log_f = x[:5]
        if reset is not None:  # the state entering this step is zeros
            start = x[5][:, None]
            C, n, m = (jnp.where(start[..., None, None], 0, C), jnp.where(start[..., None], 0, n),
                       jnp.where(start, 0, m))
        m_new = jnp.maximum(log_f + m, i)
        f_gate = jnp.exp(log_f + m - m_new)
        i_gate = jnp.exp(i - m_new)
        C = f_gate[..., None, None] * C + (i_gate[..., None] * k)[..., :, None] * v[..., None, :]
        n = f_gate[..., None] * n + i_gate[..., None] * k
        numerator = jnp.einsum("bhk,bhkv->bhv", q, C)
        denominator = jnp.maximum(jnp.abs(jnp.einsum("bhk,bhk->bh", q, n)), jnp.exp(-m_new)) + eps
        return (C, n, m_new), numerator / denominator[..., None]

    state, h = jax.lax.scan(body, tuple(initial_state), tuple(jnp.swapaxes(x, 0, 1) for x in xs))
    return jnp.swapaxes(h, 0, 1), state
