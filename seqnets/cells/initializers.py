"""Initializers for gate-stacked weight matrices.

Every seqnets cell stores its gates side by side: an input kernel ``(input_size,
gates * hidden)`` and a recurrent kernel ``(hidden, gates * hidden)``. A recurrent
initializer is applied to each ``(hidden, hidden)`` gate block on its own, so that
"orthogonal" means each gate's matrix is orthogonal, as in Flax's per-gate cells.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from seqnets.types import Array, Initializer

lecun_normal: Initializer = jax.nn.initializers.lecun_normal()
orthogonal: Initializer = jax.nn.initializers.orthogonal()
zeros: Initializer = jax.nn.initializers.zeros


def identity(scale: float = 1.0) -> Initializer:
    """``scale * I`` for a square matrix (the IRNN of Le, Jaitly & Hinton 2015)."""

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        del key
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"identity init needs a square matrix; got shape {shape}.")
        return scale * jnp.eye(shape[0], dtype=dtype)

    return init


def per_gate(init: Initializer, key: Array, rows: int, hidden: int, gates: int) -> Array:
    """``(rows, gates * hidden)``: ``init`` applied to each gate's ``(rows, hidden)`` block."""
    keys = jax.random.split(key, gates)
    return jnp.concatenate(
        [init(k, (rows, hidden), jnp.float32) for k in keys], axis=1
    ).astype(jnp.float32)


def gate_kernels(
    key: Array,
    input_size: int,
    hidden: int,
    gates: int,
    input_init: Initializer,
    recurrent_init: Initializer,
    recurrent_rows: int | None = None,
) -> dict[str, Array]:
    """``{"w_x": (input_size, gates * hidden), "w_h": (rows, gates * hidden)}``, per gate.

    ``rows`` is ``recurrent_rows`` (the width of the recurrent input, e.g. an LSTM's
    projection) or ``hidden``.
    """
    k_x, k_h = jax.random.split(key)
    rows = hidden if recurrent_rows is None else recurrent_rows
    return {
        "w_x": per_gate(input_init, k_x, input_size, hidden, gates),
        "w_h": per_gate(recurrent_init, k_h, rows, hidden, gates),
    }
