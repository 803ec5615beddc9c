"""Dropout for recurrent networks: per step, or variational (one mask per sequence).

Standard dropout draws a fresh Bernoulli mask for every element of ``xs (batch, time,
features)``. Variational dropout (Gal & Ghahramani 2016) draws one mask per sequence and
uses it at every step:

    x_t  ->  x_t * m_x / (1 - p),        m_x ~ Bernoulli(1 - p),  (batch, features)
    h_{t-1}  ->  h_{t-1} * m_h / (1 - q)  before every step,  m_h ~ Bernoulli(1 - q),  (batch, hidden)

Under truncated BPTT "a sequence" is one window of one stream: each call draws new
masks from its key, and the train step's key changes every window.

Which part of the carry the recurrent mask touches: by default its *last* leaf, the
``h`` of seqnets' cells (the LSTM's ``(c, h)``, the GRU's and Elman's ``h``). For the
LSTM and Elman cells ``h`` enters the step only through ``h @ W_h``, so this is exactly
Gal's recurrent dropout; the memory cell ``c`` is never dropped (dropping it makes the
cell forget). For the GRU the masked ``h`` also enters the interpolation
``z * h``. ``leaves="all"`` masks every leaf of any carry pytree instead. The carry a
scan returns is never masked, so the state that crosses windows is the true one.

The wrapped cell is a classic `Cell` (its step masks, then calls the cell's step): a
linear cell (``min_gru``, ``lru``, ...) under recurrent dropout runs step by step, in
scan's sequential mode, not through the parallel or chunked kernels.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from seqnets.cells.base import Array, Carry, Cell, Params, make_cell


def dropout(
    key: Array, xs: Array, rate: float, *, variational: bool = False, time_axis: int = 1
) -> Array:
    """Inverted dropout on ``xs``, e.g. ``(batch, time, features)``.

    Args:
      key: a PRNG key.
      xs: the inputs; ``time_axis`` names their time axis (1 for batch-major, 0 for
        time-major).
      rate: probability of dropping an element, in ``[0, 1)``.
      variational: one mask per sequence, shared by every step (Gal & Ghahramani);
        False draws a fresh mask per element.

    Returns:
      ``xs`` with dropped elements zero and the others scaled by ``1 / (1 - rate)``.
    """
    _check_rate(rate, "dropout")
    if rate == 0.0:
        return xs
    shape = list(jnp.shape(xs))
    if variational:
        shape[time_axis] = 1
    keep = jax.random.bernoulli(key, 1.0 - rate, tuple(shape))
    return jnp.where(keep, xs / (1.0 - rate), 0.0)


def state_dropout(
    cell: Cell,
    key: Array,
    batch_size: int,
    rate: float,
    *,
    leaves: Literal["last", "all"] = "last",
) -> Cell:
    """``cell`` whose step sees the incoming carry times one fixed mask (variational).

    Args:
      cell: any `Cell`.
      key: a PRNG key; the masks are drawn here, once, ``(batch_size, ...)`` per leaf.
      batch_size: the batch the cell will run on.
      rate: probability of dropping an element of the state, in ``[0, 1)``.
      leaves: ``"last"`` masks the carry's last leaf (``h``); ``"all"`` every leaf.

    Returns:
      A `Cell` with the same parameters, carry and projection; only ``step`` (and so
      ``apply``) differs. Use it for one sequence (or one TBPTT window), then draw anew.
    """
    _check_rate(rate, "recurrent dropout")
    if leaves not in ("last", "all"):
        raise ValueError(f"state_dropout: leaves must be 'last' or 'all'; got {leaves!r}.")
    shapes, treedef = jax.tree.flatten(jax.eval_shape(lambda: cell.initial_carry(batch_size)))
    keys = jax.random.split(key, len(shapes))
    masked = range(len(shapes)) if leaves == "all" else [len(shapes) - 1]
    masks = [
        jnp.where(jax.random.bernoulli(keys[i], 1.0 - rate, s.shape), 1.0 / (1.0 - rate), 0.0)
        if i in masked and rate > 0.0 else None
        for i, s in enumerate(shapes)
    ]

    def step(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        flat = treedef.flatten_up_to(carry)
        flat = [leaf if m is None else leaf * m for leaf, m in zip(flat, masks, strict=True)]
        return cell.step(params, jax.tree.unflatten(treedef, flat), projected)

    return make_cell(init=cell.init, initial_carry=cell.initial_carry, project=cell.project,
                     step=step, hidden_size=cell.hidden_size, name=cell.name)


def _check_rate(rate: float, what: str) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{what} rate must lie in [0, 1); got {rate}.")
