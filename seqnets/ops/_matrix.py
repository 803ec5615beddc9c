"""What the matrix-state families (`seqnets.ops.delta_rule`, `seqnets.ops.gla`) share:
input checks, the ``reset``/``valid`` masks, and the reshaping into chunks.

Masks. ``reset[b, t]`` True drops the state entering step t (a new sequence starts at t);
``valid[b, t]`` False makes step t leave the state unchanged. An invalid step's inputs
may hold NaN: `sanitize` replaces them by zeros with `jax.numpy.where` before any
arithmetic touches them, so neither outputs nor gradients see them. A zero key with a
zero log-decay (and, for the delta rule, a zero ``beta``) is exactly the identity
update, so after `sanitize` the kernels need no other treatment of ``valid`` than
zeroing the invalid steps' outputs. Resets are exact too: the chunked kernels never put
``-inf`` into a cumulative sum, they mask the pairs of steps that a reset separates
(`segment_masks`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

# Every matmul of these kernels asks for full float32 products (a no-op on the CPU; on
# GPUs it rules out TF32 and on TPUs bfloat16 passes).
HIGHEST = jax.lax.Precision.HIGHEST


def mm(a: Array, b: Array) -> Array:
    """``a @ b`` over the last two axes, batched over the leading ones, in full float32."""
    return jnp.matmul(a, b, precision=HIGHEST)


def mm_t(a: Array, b: Array) -> Array:
    """``a @ b^T`` over the last two axes (contracting both last axes), in full float32."""
    return jnp.einsum("...ik,...jk->...ij", a, b, precision=HIGHEST)


def t_mm(a: Array, b: Array) -> Array:
    """``a^T @ b`` over the last two axes (contracting both second-to-last axes)."""
    return jnp.einsum("...ki,...kj->...ij", a, b, precision=HIGHEST)


def check_float32(where: str, **arrays: Any) -> None:
    for name, x in arrays.items():
        if x is not None and jnp.result_type(x) != jnp.float32:
            raise ValueError(f"{where}: {name} must be float32; got {jnp.result_type(x)}. "
                             f"Cast it with {name}.astype(jnp.float32).")


def check_shape(where: str, name: str, x: Any, want: tuple[int, ...], layout: str) -> None:
    if x is not None and tuple(jnp.shape(x)) != want:
        raise ValueError(f"{where}: {name} must have shape {layout} = {want}; "
                         f"got {tuple(jnp.shape(x))}.")


def check_common(where: str, q: Any, k: Any, v: Any, *, initial_state: Any, reset: Any,
                 valid: Any, chunk_size: Any) -> tuple[int, int, int, int, int]:
    """Checks q, k, v, the initial state, the masks and the chunk size; returns
    ``(B, T, H, K, V)``. Raises ValueError naming the first problem."""
    if jnp.ndim(q) != 4:
        raise ValueError(f"{where}: q must be (batch, time, heads, key_dim); got shape "
                         f"{tuple(jnp.shape(q))}. Batch-major layout: reshape or transpose it.")
    B, T, H, K = jnp.shape(q)
    check_shape(where, "k", k, (B, T, H, K), "(batch, time, heads, key_dim) like q")
    if jnp.ndim(v) != 4 or tuple(jnp.shape(v))[:3] != (B, T, H):
        raise ValueError(f"{where}: v must be (batch, time, heads, value_dim) with the batch, "
                         f"time and heads of q, {(B, T, H)}; got {tuple(jnp.shape(v))}.")
    V = jnp.shape(v)[3]
    check_shape(where, "initial_state", initial_state, (B, H, K, V),
                "(batch, heads, key_dim, value_dim)")
    for name, mask in (("reset", reset), ("valid", valid)):
        check_shape(where, name, mask, (B, T), "(batch, time)")
        if mask is not None and jnp.result_type(mask) != jnp.bool_:
            raise ValueError(f"{where}: {name} must be a bool array; got "
                             f"{jnp.result_type(mask)}. Pass e.g. {name}.astype(bool).")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{where}: chunk_size must be a positive int; got {chunk_size!r}.")
    if T == 0:
        raise ValueError(f"{where}: the sequence is empty (time = 0).")
    return B, T, H, K, V


def resolve_scale(where: str, scale: Any, K: int) -> float:
    """``scale`` as a float: ``K ** -0.5`` when None."""
    if scale is None:
        return K ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise ValueError(f"{where}: scale must be a Python float or None (K ** -0.5); "
                         f"got {scale!r}. Multiply q by an array scale yourself.")
    return float(scale)


def sanitize(valid: Array | None, *xs: Array | None) -> tuple[Array | None, ...]:
    """Each ``x`` (``(B, T, ...)``) with the invalid steps' entries replaced by zeros."""
    if valid is None:
        return xs
    out = []
    for x in xs:
        if x is None:
            out.append(None)
            continue
        mask = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
        out.append(jnp.where(mask, x, jnp.zeros((), x.dtype)))
    return tuple(out)


def zero_invalid(o: Array, valid: Array | None) -> Array:
    """``o (B, T, H, V)`` with the invalid steps' outputs set to zero."""
    return o if valid is None else jnp.where(valid[:, :, None, None], o, 0.0)


def num_chunks(T: int, C: int) -> int:
    return math.ceil(T / C)


def to_chunks(x: Array, C: int) -> Array:
    """``(B, T, H, ...)`` -> ``(B, H, N, C, ...)``, zero-padded to ``N * C`` steps.

    Zero padding is the identity update (zero key, zero log-decay, zero beta), so the
    padded steps leave the final state as it is.
    """
    B, T, H = x.shape[:3]
    N = num_chunks(T, C)
    x = jnp.pad(x, [(0, 0), (0, N * C - T)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape(B, N, C, H, *x.shape[3:])
    return jnp.moveaxis(x, 3, 1)


def from_chunks(o: Array, T: int) -> Array:
    """``(B, H, N, C, V)`` -> ``(B, T, H, V)``, the padding dropped."""
    B, H, N, C, V = o.shape
    return jnp.moveaxis(o, 1, 3).reshape(B, N * C, H, V)[:, :T]


class Segments:
    """Masks that a chunk's resets imply, each broadcastable over heads.

    With ``seg[r]`` the number of resets at steps ``<= r`` of the chunk:

    * ``same (B, 1, N, C, C)``: steps r and i lie in the same segment (no reset in
      ``(i, r]``), so step i's update reaches step r;
    * ``first (B, 1, N, C)``: no reset at steps ``<= r``, so the chunk's incoming state
      reaches step r;
    * ``last (B, 1, N, C)``: step i's update reaches the chunk's final state;
    * ``whole (B, 1, N)``: the chunk has no reset, so its incoming state reaches its end.
    """

    def __init__(self, reset: Array, C: int):
        r = to_chunks(reset[:, :, None], C)  # (B, 1, N, C) bool, padding False
        seg = jnp.cumsum(r.astype(jnp.int32), axis=-1)
        self.same = seg[..., :, None] == seg[..., None, :]
        self.first = seg == 0
        self.last = seg == seg[..., -1:]
        self.whole = seg[..., -1] == 0


def segment_masks(reset: Array | None, C: int) -> Segments | None:
    return None if reset is None else Segments(reset, C)


def causal(C: int, *, strict: bool = False) -> Array:
    """``(C, C)`` bool: ``i <= r`` (``i < r`` when strict), rows r, columns i."""
    return jnp.tril(jnp.ones((C, C), bool), -1 if strict else 0)


def segment_sums(g: Array) -> Array:
    """``D[..., r, i] = g[..., i+1] + ... + g[..., r]`` for ``i < r``, 0 for ``i >= r``,
    from ``g (..., C)``; returns ``(..., C, C)``.

    Each sum is accumulated from step ``i + 1`` on, so its rounding is relative to its own
    size. ``G[r] - G[i]`` from cumulative sums would carry the rounding of the larger
    ``G``: after strong decays (``|G| ~ 1000``) that is ``~1e-4`` in a decay near 1.
    """
    C = g.shape[-1]
    later = jnp.arange(C)[:, None] > jnp.arange(C)[None, :]  # s > i, rows s
    # The sums over s <= r as a matmul with a lower-triangular matrix of ones: the same
    # terms, added in the dot's order; on XLA:CPU 3x faster than a cumsum along this axis.
    upto = jnp.tril(jnp.ones((C, C), g.dtype))
    return jnp.einsum("rs,...si->...ri", upto, jnp.where(later, g[..., :, None], 0.0),
                      precision=HIGHEST)


def suffix_sums(g: Array, axis: int = -1) -> Array:
    """``g[i+1] + ... + g[C-1]`` along ``axis`` (0 at the last step), each accumulated
    from the end."""
    rev = jnp.flip(g, axis)
    incl = jnp.cumsum(rev, axis=axis)
    excl = jnp.concatenate([jnp.zeros_like(jax.lax.slice_in_dim(incl, 0, 1, axis=axis)),
                            jax.lax.slice_in_dim(incl, 0, g.shape[axis] - 1, axis=axis)],
                           axis=axis)
    return jnp.flip(excl, axis)


def pair_decay(g: Array, mask: Array) -> Array:
    """``exp(g[i+1] + ... + g[r])`` where ``mask[r, i]``, else 0, for log-decays
    ``g (..., C)``; returns ``(..., C, C)``. Only sums that the mask keeps (``i <= r``:
    never positive for log-decays ``<= 0``) reach `exp`, so none can overflow."""
    D = segment_sums(g)
    return jnp.where(mask, jnp.exp(jnp.where(mask, D, 0.0)), 0.0)
