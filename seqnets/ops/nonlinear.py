"""The non-linear family: any carry update, evaluated one step at a time.

The LSTM, the GRU, the Elman network and every cell whose update is not linear in its
carry run here: one ``lax.scan`` iteration per step, the only order that exists for them.
The kernel applies the mask contract (`seqnets.ops.masks`) to the carry itself, with
`where_rows`, so a carry may be any pytree with leaves of any rank:

* a reset step first replaces the rows' carry with the initial carry;
* a padded step keeps the rows' carry as it was (its output is zeroed by the runner).

Kernel signature: ``kernel(step, carry, xs, *, initial, valid, reset, unroll) ->
(ys, carry)``, where ``step(carry, x_t) -> (carry, y_t)`` and ``xs`` is a pytree of
time-major ``(time, batch, ...)`` arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from seqnets.ops import registry
from seqnets.ops.masks import where_rows
from seqnets.ops.registry import ScanMode
from seqnets.types import Array, Carry

FAMILY = "nonlinear"


def sequential(
    step: Callable[[Carry, Any], tuple[Carry, Array]],
    carry: Carry,
    xs: Any,
    *,
    initial: Carry,
    valid: Array | None = None,
    reset: Array | None = None,
    unroll: int | bool = 1,
) -> tuple[Array, Carry]:
    """Runs ``step`` over the leading (time) axis of ``xs``; returns ``(ys, carry)``.

    ``valid`` and ``reset`` are bool ``(time, batch)`` or None (`seqnets.ops.masks.Steps`).
    """

    def body(carry: Carry, inputs: tuple[Any, Array | None, Array | None]):
        x_t, valid_t, reset_t = inputs
        if reset_t is not None:
            carry = where_rows(reset_t, initial, carry)
        new_carry, y = step(carry, x_t)
        if valid_t is not None:
            new_carry = where_rows(valid_t, new_carry, carry)
        return new_carry, y

    carry, ys = jax.lax.scan(body, carry, (xs, valid, reset), unroll=unroll)
    return ys, carry


registry.register(FAMILY, ScanMode.SEQUENTIAL, sequential)
registry.register_auto(FAMILY, lambda problem: ScanMode.SEQUENTIAL)
