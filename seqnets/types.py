"""Type aliases shared by every part of seqnets (cells, runners, training)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
Params = Any  # a pytree of arrays
Carry = Any  # a pytree of arrays, each (batch, ...)
Initializer = Callable[[Array, tuple[int, ...], Any], Array]
