"""The one place seqnets reads JAX's varying-manual-axes (vma) type of a value.

Inside ``jax.shard_map`` every value carries the set of mesh axes over which it varies
(differs between devices). A ``lax.scan`` carry must keep that set from one step to the
next, and a replicated (non-varying) weight used inside a loop over varying values is
cast at every use, whose transpose is an all-reduce in every backward step. `vary_like`
casts once, before the loop. Outside ``shard_map`` both functions are no-ops.

JAX exposes the set as ``jax.typeof(x).vma`` (0.7-0.12) and, from 0.10, also through
``manual_axis_type.varying``; `varying_axes` reads whichever the installed JAX has.
"""

from __future__ import annotations

import jax

from seqnets.types import Array


def varying_axes(x: Array) -> frozenset[str]:
    """The ``shard_map`` mesh axes over which ``x`` varies; empty outside ``shard_map``."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    if manual is not None and hasattr(manual, "varying"):
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", ()))


def vary_like(tree, like: Array):
    """Casts every leaf of ``tree`` to vary over the axes ``like`` varies over.

    Returns ``tree`` unchanged outside ``shard_map`` or when nothing is missing; the
    values are never changed, only their type (``jax.lax.pcast(..., to="varying")``).
    """
    axes = varying_axes(like)
    if not axes:
        return tree

    def cast(leaf: Array) -> Array:
        missing = tuple(sorted(axes - varying_axes(leaf)))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree.map(cast, tree)
