"""Deprecated: the diagonal family moved to `seqnets.ops.diagonal`, and the choice of mode
to `seqnets.ops.registry`.

The names below keep working for one release:

* `linear_recurrence`, `fold_masks`, `default_chunk_size`: `seqnets.ops.diagonal`;
* `ScanMode`, `MODES`: `seqnets.ops.registry`;
* `resolve_mode`: `seqnets.ops.registry.resolve` for a cell's family;
* `linear_scan`: `seqnets.scan` runs every family.
"""

from __future__ import annotations

import jax.numpy as jnp

from seqnets.cells.base import Array, Carry, Cell, Linear, Params
from seqnets.ops import registry
from seqnets.ops.diagonal import default_chunk_size, fold_masks, linear_recurrence
from seqnets.ops.registry import MODES, ScanMode

__all__ = ["MODES", "ScanMode", "default_chunk_size", "fold_masks", "linear_recurrence",
           "linear_scan", "resolve_mode"]


def resolve_mode(
    mode: str | ScanMode,
    cell: Cell,
    time: int,
    batch: int,
    state: int,
    backend: str | None = None,
) -> ScanMode:
    """The `ScanMode` that `seqnets.scan` uses for ``cell`` on a ``(time, batch, state)`` run.

    Deprecated: `seqnets.ops.registry.resolve` decides for every family.

    Raises:
      ValueError: for an unknown mode, or a mode that the cell's family has no kernel for.
    """
    name = mode.value if isinstance(mode, ScanMode) else mode
    if name in MODES and name not in registry.modes(cell.family):
        raise ValueError(
            f"seqnets.scan: the {cell.name!r} cell is not linear in its carry, so it runs only "
            f"in modes {registry.modes(cell.family)}; got mode={name!r}."
        )
    return registry.resolve(cell.family, mode, dtype=jnp.float32, time=time, batch=batch,
                            state=state, platform=backend, where="seqnets.scan")[0]


def linear_scan(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry,
    *,
    valid: Array | None,
    reset: Array | None,
    mode: ScanMode,
    chunk_size: int | None,
    reverse: bool,
    unroll: int | bool = 1,
) -> tuple[Carry, Array]:
    """Deprecated: runs a diagonal-family cell over time-major ``xs (time, batch, input)``.

    ``valid`` and ``reset`` are bool ``(time, batch)`` or None, ``reset`` already shifted
    for ``reverse`` and masked by ``valid``. Use `seqnets.scan`, which takes ``lengths``
    and ``resets`` and runs every family.

    Returns:
      ``(carry, ys)``: the carry after each row's last valid step and the outputs
      ``(time, batch, hidden_size)``, zeros at padded steps.
    """
    recurrence = cell.recurrence
    if not isinstance(recurrence, Linear) or recurrence.starts_segments:
        raise ValueError(f"linear_scan needs a diagonal-family cell without segment starts; "
                         f"{cell.name!r} is not one. Use seqnets.scan.")
    if valid is not None:
        xs = jnp.where(valid[..., None], xs, jnp.zeros_like(xs))
    projected = cell.project(params, xs)
    a, b = fold_masks(*recurrence.coefficients(params, projected), valid, reset)
    if xs.shape[0] == 0:
        return carry, recurrence.readout(params, b.astype(carry.dtype), projected)
    hs = linear_recurrence(a, b, carry, mode=mode, chunk_size=chunk_size, reverse=reverse,
                           unroll=unroll)
    ys = recurrence.readout(params, hs, projected)
    if valid is not None:
        ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return hs[0] if reverse else hs[-1], ys
