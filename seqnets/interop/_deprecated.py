"""Deprecated aliases: the per-cell converter names of 0.1.0, removed in the next minor version."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "0.2.0"


def deprecated_alias(old_name: str, new: Callable[[Any, str], Any], cell: str) -> Callable[[Any], Any]:
    """``old_name(params)``, which calls ``new(params, cell)`` after a `DeprecationWarning`.

    The warning names the replacement call, e.g. ``seqnets.interop.from_torch(params,
    'lstm')``; the result is the replacement's.
    """
    replacement = f"seqnets.interop.{new.__name__}(params, {cell!r})"

    def alias(params: Any) -> Any:
        warnings.warn(
            f"seqnets.interop.{old_name} is deprecated and will be removed in seqnets "
            f"{REMOVED_IN}; use {replacement} instead (same result).",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(params, cell)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__doc__ = f"Deprecated: use ``{replacement}``, which gives the same result. Removed in " \
                    f"seqnets {REMOVED_IN}."
    return alias


def deprecated_pairs(
    read: Callable[[Any, str], Any], write: Callable[[Any, str], Any], names: dict[str, str]
) -> tuple[Callable[[Any], Any], ...]:
    """The aliases ``{read}_{old}`` and ``{write}_{old}`` for each ``old: cell`` of ``names``,
    in that order: ``from_flax_lstm, to_flax_lstm, ...`` for ``from_flax, to_flax``."""
    return tuple(deprecated_alias(f"{new.__name__}_{old}", new, cell)
                 for old, cell in names.items() for new in (read, write))
