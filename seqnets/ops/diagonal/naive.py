"""The diagonal family's reference: ``h_t = a_t * h_{t-1} + b_t``, one step at a time.

A Python loop over the steps, written for reading, not speed: the tests compare every
kernel with it.
"""

from __future__ import annotations

import jax.numpy as jnp

from seqnets.types import Array


def diagonal_recurrence(a: Array, b: Array, h0: Array) -> tuple[Array, Array]:
    """Every state of ``h_t = a_t * h_{t-1} + b_t`` (elementwise) from ``h_{-1} = h0``.

    Args:
      a: ``(time, batch, ...)``, or a shape that broadcasts to ``b``'s.
      b: ``(time, batch, ...)``.
      h0: ``(batch, ...)``.

    Returns:
      ``(hs, h_last)``: ``hs (time, batch, ...)`` the state after each step, and the
      state after the last step (``h0`` when there are no steps).
    """
    a = jnp.broadcast_to(a, b.shape)
    h, hs = h0, []
    for t in range(b.shape[0]):
        h = a[t] * h + b[t]
        hs.append(h)
    return (jnp.stack(hs) if hs else b), h
