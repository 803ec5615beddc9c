"""The diagonal family's sequential kernel: one ``lax.scan`` iteration per step."""

from __future__ import annotations

import jax

from seqnets.types import Array


def sequential(a: Array, b: Array, h0: Array, *, chunk_size: int | None = None,
               unroll: int | bool = 1) -> tuple[Array, Array]:
    """``h_t = a_t * h_{t-1} + b_t`` as a ``lax.scan`` over time; see `seqnets.ops.diagonal`.

    ``chunk_size`` is ignored. Returns ``(hs (time, batch, ...), h_last)``.
    """
    del chunk_size
    # An a that is the same at every step is a constant of the scan, not one of its inputs:
    # it is never broadcast over time, and its gradient is summed in the backward scan's
    # carry instead of being stored for every step.
    constant = a.ndim < b.ndim or a.shape[0] == 1
    a_const = (a[0] if a.ndim == b.ndim else a) if constant else None

    def body(h: Array, step: Array | tuple[Array, Array]) -> tuple[Array, Array]:
        a_t, b_t = (a_const, step) if constant else step
        h = a_t * h + b_t
        return h, h

    return _swap(jax.lax.scan(body, h0, b if constant else (a, b), unroll=unroll))


def _swap(carry_and_ys: tuple[Array, Array]) -> tuple[Array, Array]:
    h_last, hs = carry_and_ys
    return hs, h_last
