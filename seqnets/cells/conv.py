"""The short causal convolution of the matrix-state and xLSTM cells, with its inputs in
the carry.

DeltaNet, Gated DeltaNet, Mamba-2 and the mLSTM block convolve each channel of their
input with a short causal kernel (width ``K``, 4 in the papers) before the recurrence:

    y_t[c] = b[c] + sum_{j=0}^{K-1} w[K-1-j, c] * x_{t-j}[c]

The last ``K - 1`` inputs live in the carry (``buffer``, ``(batch, K - 1, channels)``,
oldest first), so a window that continues a carry continues the convolution, and a reset,
which sets the carry to its initial zeros, makes the convolution start afresh. `step` is
the definition; `sequence` computes the same for a whole sequence in the processing order
of `seqnets.ops.masks` (``steps.valid``, ``steps.reset``), and returns the buffer after
each row's last valid step.
"""

from __future__ import annotations

import jax.numpy as jnp

from seqnets.ops.masks import Steps
from seqnets.types import Array


def step(x_t: Array, buffer: Array, w: Array, b: Array | None = None) -> tuple[Array, Array]:
    """One step: ``x_t (batch, C)``, ``buffer (batch, K - 1, C)``, ``w (K, C)``.

    Returns ``(y_t (batch, C), buffer)``: the convolution at this step and the buffer that
    holds the last ``K - 1`` inputs, this one included.
    """
    window = jnp.concatenate([buffer, x_t[:, None]], axis=1)  # (batch, K, C)
    y = jnp.sum(window * w, axis=1)
    return (y if b is None else y + b), window[:, 1:]


def sequence(xs: Array, buffer: Array, w: Array, b: Array | None = None,
             steps: Steps | None = None) -> tuple[Array, Array]:
    """Every step of time-major ``xs (time, batch, C)`` from ``buffer (batch, K - 1, C)``.

    A tap that reaches back across a reset, or into the buffer after a reset, reads zero.
    Padded steps (``steps.valid`` False) lie after each row's valid steps; their outputs
    are finite but meaningless, and the returned buffer holds the last ``K - 1`` inputs up
    to each row's last valid step.

    Returns:
      ``(ys (time, batch, C), buffer (batch, K - 1, C))``.
    """
    steps = Steps() if steps is None else steps
    time, batch = xs.shape[:2]
    taps = w.shape[0]
    history = jnp.swapaxes(buffer, 0, 1)  # (K - 1, batch, C)
    extended = jnp.concatenate([history, xs], axis=0)  # (K - 1 + time, batch, C)
    # Segment of every position: the buffer belongs to segment 0, and each reset opens a
    # new one; a tap contributes only within the segment of the step it serves.
    if steps.reset is None:
        segment = jnp.zeros((taps - 1 + time, batch), jnp.int32)
    else:
        opened = jnp.cumsum(steps.reset.astype(jnp.int32), axis=0)
        segment = jnp.concatenate([jnp.zeros((taps - 1, batch), jnp.int32), opened], axis=0)
    own = segment[taps - 1:]
    ys = jnp.zeros(xs.shape, jnp.result_type(xs, w))
    for j in range(taps):  # tap j reads x_{t-j}
        start = taps - 1 - j
        same = (segment[start:start + time] == own)[..., None]
        ys = ys + w[taps - 1 - j] * jnp.where(same, extended[start:start + time], 0.0)
    if b is not None:
        ys = ys + b
    # The buffer after each row's last valid step: positions length .. length + K - 2 of
    # the extended sequence, zero where they lie before the last valid step's segment.
    lengths = (jnp.full((batch,), time) if steps.valid is None
               else jnp.sum(steps.valid, axis=0, dtype=jnp.int32))
    index = lengths[None, :] + jnp.arange(taps - 1)[:, None]  # (K - 1, batch)
    kept = jnp.take_along_axis(extended, index[..., None], axis=0)
    last_segment = jnp.take_along_axis(segment, (lengths + taps - 2)[None, :], axis=0)
    kept_segment = jnp.take_along_axis(segment, index, axis=0)
    kept = jnp.where((kept_segment == last_segment)[..., None], kept, 0.0)
    return ys, jnp.swapaxes(kept, 0, 1)
