"""The mLSTM kernel that works in chunks of ``L`` steps (Beck et al. 2025, "Tiled Flash
Linear Attention"): one loop iteration a chunk.

Unrolling the recurrence of `seqnets.ops.mlstm` from a state ``(C_0, n_0, m_0)``, with
``b_t = log_f_1 + ... + log_f_t`` (the cumulative log forget gate)::

    m_t = max(m_0 + b_t, max_{s <= t} (b_t - b_s + i_s))
    C_t = exp(m_0 + b_t - m_t) C_0 + sum_{s <= t} exp(b_t - b_s + i_s - m_t) k_s v_s^T

and ``n_t`` likewise with ``k_s`` for ``k_s v_s^T``. Every weight is ``exp(x - m_t)`` of a
term ``x`` that ``m_t`` is the max of, so it lies in (0, 1]: the stabiliser ``m_t`` is
the same max as the step-by-step one, not an approximation of it, and the chunked form
computes the same function. Over every chunk at once, before the loop: ``b``, the masked
``(L, L)`` log weights ``b_t - b_s + i_s`` (s <= t) and their row max ``m_intra``. Then a
`lax.scan` over the chunks carries ``(C, n, m)`` from chunk to chunk and computes each
chunk's outputs: the masked quadratic form ``(q k^T * D) v`` plus the query against the
chunk's first state, weighted by ``exp(m_c + b_t - m_t)`` (`chunk_outputs`).

Gradients. Scaling by ``exp(-m)`` cancels everywhere but in ``h_t``'s ``eps`` and lower
bound, and in the returned state: with the unscaled sums fixed, ``dh_t/dm_t = -h_t eps /
(max(|q'^T n_t|, exp(-m_t)) + eps)`` and ``dC/dm = -C``. So every ``m`` is a constant
(`jax.lax.stop_gradient`) where it scales, and its true dependence enters through those
two terms only, with ``m`` computed again differentiably from the argmax of each max
(`row_max`). `chunk_outputs` has a hand-written VJP: six matmuls and no ``(L, L)``
reduction.

Masks: a ``valid`` False step is an identity (`mask_inputs`). A reset at step ``r``
replaces the state entering ``r`` by zeros, ``m`` included; a zero ``m`` still counts in
the max, as the term ``0 + b_t - b_{r-1} = b_t - b_r + log_f_r``, so a reset adds
``log_f_r`` to step ``r``'s source for ``m`` (not for ``C`` and ``n``). Weights never
cross a reset: within a chunk, ``s`` and ``t`` must lie in one segment; a chunk with a
reset passes on only what follows its last reset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.lax import stop_gradient

from seqnets.ops.mlstm.sequential import mask_inputs

State = tuple[Array, Array, Array]


def pad_time(x: Array, size: int, value: float | bool = 0) -> Array:
    """``x (B, T, ...)`` padded with ``value`` on the right of the time axis to ``size`` steps."""
    widths = [(0, 0), (0, size - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
    return jnp.pad(x, widths, constant_values=value)


def to_chunks(x: Array, length: int) -> Array:
    """``(B, NC * L, H, ...)`` -> ``(NC, B, H, L, ...)``: chunks first, for `lax.scan`."""
    B, T, H = x.shape[:3]
    x = x.reshape(B, T // length, length, H, *x.shape[3:])
    return jnp.moveaxis(x, (1, 3), (0, 2))


def from_chunks(x: Array, time: int) -> Array:
    """The inverse of `to_chunks`, without the padding: ``(NC, B, H, L, ...)`` -> ``(B, T, H, ...)``."""
    NC, B, H, L = x.shape[:4]
    return jnp.moveaxis(x, (0, 2), (1, 3)).reshape(B, NC * L, H, *x.shape[4:])[:, :time]


def causal_mask(length: int, segment: Array | None = None) -> Array:
    """True where step ``s`` reaches step ``t`` (row t, column s): ``s <= t``, and, given
    ``segment (..., L)`` (resets so far), no reset in ``(s, t]``."""
    mask = jnp.tril(jnp.ones((length, length), bool))
    if segment is not None:
        mask = mask & (segment[..., :, None] == segment[..., None, :])
    return mask


def row_max(log_w: Array, b: Array, source: Array) -> Array:
    """``max_s log_w[..., t, s]`` where ``log_w = b_t - b_s + source_s`` or ``-inf``;
    differentiable through the argmax only (a gather of ``L`` terms, not ``L * L``)."""
    log_w = stop_gradient(log_w)
    s = jnp.argmax(log_w, -1)
    top = jnp.take_along_axis(log_w, s[..., None], -1)[..., 0]
    pick = lambda x: jnp.take_along_axis(x, s, -1)  # noqa: E731
    return jnp.where(top == -jnp.inf, -jnp.inf, (b - pick(b)) + pick(source))


def mlstm_chunked(q: Array, k: Array, v: Array, i: Array, f: Array, *,
                  initial_state: State, eps: float = 1e-6, chunk_size: int = 64,
                  reset: Array | None = None, valid: Array | None = None,
                  ) -> tuple[Array, State]:
    """The mLSTM in chunks of ``chunk_size`` steps; the signature of every registered kernel.

    Args:
      q, k: ``(B, T, H, K)``; v: ``(B, T, H, V)``; i, f: ``(B, T, H)``.
      initial_state: ``(C (B, H, K, V), n (B, H, K), m (B, H))``.
      eps: added to the denominator.
      chunk_size: steps a chunk (at most T are used); T need not be a multiple.
      reset, valid: ``(B, T)`` bool or None, as in `seqnets.ops.mlstm`.

    Returns:
      ``(h (B, T, H, V), (C, n, m))``.
    """
    T = q.shape[1]
    q, k, v, i, log_f = mask_inputs(q, k, v, i, f, valid)
    L = min(chunk_size, T)
    NC = -(-T // L)
    # Padded steps are identities, like invalid ones: they leave the final state alone.
    q, k, v, log_f = (to_chunks(pad_time(x, NC * L), L) for x in (q, k, v, log_f))
    i = to_chunks(pad_time(i, NC * L, -jnp.inf), L)  # (NC, B, H, L)
    b = jnp.cumsum(log_f, axis=-1)
    segment, source = None, i  # source: what step s adds to the max that is m
    if reset is not None:
        reset = to_chunks(pad_time(reset[:, :, None], NC * L, False), L)  # (NC, B, 1, L)
        segment = jnp.cumsum(reset, axis=-1)  # resets so far in the chunk
        source = jnp.maximum(i, jnp.where(reset, log_f, -jnp.inf))
    decay = b[..., :, None] - b[..., None, :]  # (..., t, s)
    m_intra = row_max(jnp.where(causal_mask(L, segment), decay + source[..., None, :], -jnp.inf),
                      b, source)
    # What a chunk alone leaves at its end (its last segment), stabilised by its own max a.
    a = m_intra[..., -1]
    log_e = decay[..., -1, :] + i - stop_gradient(jnp.where(a == -jnp.inf, 0, a))[..., None]
    first = jnp.ones_like(b, bool)  # steps that the chunk's first state reaches
    if reset is not None:
        log_e = jnp.where(segment == segment[..., -1:], log_e, -jnp.inf)
        first = segment == 0
    e = jnp.exp(log_e)

    def chunk(state, x):
        C, n, m_start = state  # C and n are scaled by exp(-m_start)
        q, k, v, b, i, m_intra, a, e, first, segment = x
        m_end = jnp.maximum(jnp.where(first[..., -1], b[..., -1] + m_start, -jnp.inf), a)
        m = jnp.maximum(jnp.where(first, m_start[..., None] + b, -jnp.inf), m_intra)
        start_, end_ = stop_gradient(m_start), stop_gradient(m_end)
        w_first = jnp.exp(jnp.where(first, start_[..., None] + b, -jnp.inf) - stop_gradient(m))
        h = chunk_outputs(q, k, v, b, i, C, n, w_first, m, segment, eps)
        w_prev = jnp.exp(jnp.where(first[..., -1], b[..., -1] + start_, -jnp.inf) - end_)
        w_new = jnp.exp(stop_gradient(a) - end_)
        k_end = k * e[..., None]
        U = jnp.einsum("bhlk,bhlv->bhkv", k_end, v)
        C = w_prev[..., None, None] * C + w_new[..., None, None] * U
        n = w_prev[..., None] * n + w_new[..., None] * k_end.sum(-2)
        return (C, n, m_end), h

    C0, n0, m0 = initial_state
    to_m0 = jnp.exp(m0 - stop_gradient(m0))  # one in value; C0 is scaled by exp(-m0)
    state = (C0 * to_m0[..., None, None], n0 * to_m0[..., None], m0)
    xs = (q, k, v, b, i, m_intra, a, e, first, segment)
    (C, n, m), h = jax.lax.scan(chunk, state, xs)
    # The state is scaled by exp(-m): dC/dm = -C, with the unscaled sums fixed.
    to_m = 1 - (m - stop_gradient(m))
    return from_chunks(h, T), (C * to_m[..., None, None], n * to_m[..., None], m)


def _weights(b: Array, i: Array, m: Array, segment: Array | None) -> Array:
    """``D[t, s] = exp(b_t - b_s + i_s - m_t)`` where ``s`` reaches ``t``, else 0."""
    mask = causal_mask(b.shape[-1], segment)
    return jnp.exp(jnp.where(mask, b[..., :, None] - b[..., None, :] + i[..., None, :], -jnp.inf)
                   - m[..., None])


def _outputs_fwd(q, k, v, b, i, C, n, w_first, m, segment, eps):
    D = _weights(b, i, m, segment)
    P = jnp.einsum("...lk,...sk->...ls", q, k) * D
    q_first = w_first[..., None] * q
    num_intra = jnp.einsum("...ls,...sv->...lv", P, v)
    den_intra = P.sum(-1)
    numerator = num_intra + jnp.einsum("...lk,...kv->...lv", q_first, C)
    denominator = den_intra + jnp.einsum("...lk,...k->...l", q_first, n)
    scale = jnp.maximum(jnp.abs(denominator), jnp.exp(-m)) + eps
    h = numerator / scale[..., None]
    return h, (q, k, v, C, n, w_first, m, eps, D, P, num_intra, den_intra, denominator, scale, h)


def _outputs_bwd(res, dh):
    q, k, v, C, n, w_first, m, eps, D, P, num_intra, den_intra, denominator, scale, h = res
    d_num = dh / scale[..., None]
    d_scale = -(d_num * h).sum(-1)
    d_den = jnp.where(jnp.abs(denominator) >= jnp.exp(-m), d_scale * jnp.sign(denominator), 0)
    q_first = w_first[..., None] * q
    dP = jnp.einsum("...lv,...sv->...ls", d_num, v) + d_den[..., None]
    X = jnp.einsum("...lv,...kv->...lk", d_num, C) + d_den[..., None] * n[..., None, :]
    dv = jnp.einsum("...ls,...lv->...sv", P, d_num)
    dS = dP * D
    # d(log D) = dP * P, summed over s (rows) and over t (columns), without an (L, L) pass:
    # rows_t = d_num_t . (P v)_t + d_den_t sum_s P_ts;  cols_s = v_s . (P^T d_num)_s + (P^T d_den)_s.
    rows = (d_num * num_intra).sum(-1) + d_den * den_intra
    cols = (v * dv).sum(-1) + jnp.einsum("...ls,...l->...s", P, d_den)
    dq = jnp.einsum("...ls,...sk->...lk", dS, k) + w_first[..., None] * X
    dk = jnp.einsum("...ls,...lk->...sk", dS, q)
    dC = jnp.einsum("...lk,...lv->...kv", q_first, d_num)
    dn = jnp.einsum("...lk,...l->...k", q_first, d_den)
    dw = (q * X).sum(-1)
    # m scales numerator and denominator alike; what is left is eps: dh/dm = -h eps / scale.
    return dq, dk, dv, rows - cols, cols, dC, dn, dw, eps * d_scale, None, None


chunk_outputs = jax.custom_vjp(lambda *args: _outputs_fwd(*args)[0])
chunk_outputs.__doc__ = """One chunk's outputs ``h (..., L, V)`` from its queries
``q (..., L, K)`` (scaled), keys, values ``v (..., L, V)``, cumulative log forget gates
``b (..., L)``, input gates ``i (..., L)``, first state ``C (..., K, V)``, ``n (..., K)``,
the first state's weights ``w_first (..., L)``, the stabiliser ``m (..., L)``,
``segment (..., L)`` or None, and eps.
``m`` only scales (its gradient is ``eps`` times that of the scale's inverse)."""
chunk_outputs.defvjp(_outputs_fwd, _outputs_bwd)
