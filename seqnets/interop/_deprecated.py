"""Deprecated aliases for renamed interop functions (kept for one release)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any


def deprecated_alias(old_name: str, new: Callable[..., Any]) -> Callable[..., Any]:
    """Returns ``new`` under ``old_name``; each call emits a `DeprecationWarning` naming ``new``."""

    @functools.wraps(new)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"seqnets.interop.{old_name} is deprecated and will be removed in the next release; "
            f"use seqnets.interop.{new.__name__} instead (same arguments, same result).",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__doc__ = f"Deprecated alias of `{new.__name__}`, removed in the next release."
    return alias
