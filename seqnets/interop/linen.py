"""A Flax linen module that runs a seqnets `Cell` or `Stack`: needs ``pip install 'seqnets[flax]'``.

This is the only part of `seqnets.interop` that imports Flax; the parameter converters in
`seqnets.interop.flax` and `seqnets.interop.torch` work on plain mappings of arrays.
`seqnets.interop.RNN` and `seqnets.interop.flax.RNN` name the same class and import this
module on first use.
"""

from __future__ import annotations

from typing import Any

try:
    import flax.linen as nn
except ImportError as error:  # pragma: no cover - exercised in environments without Flax
    raise ImportError(
        "seqnets.interop.RNN is a Flax linen module and needs Flax, which is not installed: "
        "pip install 'seqnets[flax]'. The parameter converters (from_flax_*, to_flax_*, "
        "from_torch_*, to_torch_*) work without it."
    ) from error

from seqnets.cells.base import Cell
from seqnets.sequence.stack import Stack, as_stack
from seqnets.types import Array


class RNN(nn.Module):
    """A Flax linen module that runs a seqnets `Cell` or `Stack` over a sequence.

    Its parameters live in one linen param, ``"seqnets"``, in seqnets' own layout, so
    they can be handed to the pure functions (and back) unchanged.

    Attributes:
      model: a seqnets `Cell` (run as a one-layer stack) or `Stack`.
      unroll: passed to ``lax.scan``.
      hoist, mode, chunk_size, checkpoint: passed to `seqnets.scan` (through
        ``Stack.apply``): see there.

    Call with ``xs (batch, time, features)`` and optional ``carry``, ``lengths``,
    ``resets``; returns ``ys (batch, time, output_size)``, or ``(carry, ys)`` with
    ``return_carry=True``. Dropout (between layers, or on the recurrent state) needs
    ``deterministic=False`` and a ``"dropout"`` RNG.
    """

    model: Cell | Stack
    unroll: int = 1
    hoist: bool | None = None
    mode: str = "auto"
    chunk_size: int | None = None
    checkpoint: int | None = None

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        carry: Any = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        return_carry: bool = False,
        deterministic: bool = True,
    ):
        model = as_stack(self.model, "seqnets.interop.RNN")
        params = self.param("seqnets", lambda key: model.init(key, xs.shape[-1]))
        key = None
        if not deterministic and model.has_dropout:
            key = self.make_rng("dropout")
        carry, ys = model.apply(
            params, xs, carry=carry, lengths=lengths, resets=resets, key=key, unroll=self.unroll,
            hoist=self.hoist, mode=self.mode, chunk_size=self.chunk_size,
            checkpoint=self.checkpoint,
        )
        return (carry, ys) if return_carry else ys
