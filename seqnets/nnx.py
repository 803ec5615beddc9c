"""Flax NNX: `RNN`, an ``nnx.Module`` that runs a seqnets cell or stack.

Needs Flax (``pip install 'seqnets[flax]'``); ``import seqnets`` does not import this
module, and ``seqnets.nnx`` imports it on first use.

The parameters stay in seqnets' layout, a list with one ``{"forward": ..., "backward":
...}`` dict per layer (`seqnets.stack`), with every array its own ``nnx.Param``. That is
what makes the module work with ``nnx.jit``, ``nnx.grad`` and ``nnx.Optimizer``: NNX's
state is a tree whose leaves are Variables, so a whole list of dicts inside a single
``nnx.Param`` gives an optimizer state of another tree structure than the gradient
("pytree structure error: different types at key path ..."). `RNN.stack_params` returns
the plain list of arrays for the pure functions (`seqnets.stack`'s ``apply``,
`seqnets.interop.to_torch`, a checkpoint).

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import seqnets as sn
    >>> rnn = sn.nnx.RNN(sn.lstm(8), 3, rngs=nnx.Rngs(0))
    >>> rnn(jnp.ones((2, 5, 3))).shape
    (2, 5, 8)
"""

from __future__ import annotations

from typing import Any

try:
    from flax import nnx
except ImportError as error:  # pragma: no cover - exercised in environments without Flax
    raise ImportError(
        "seqnets.nnx.RNN is a Flax NNX module and needs Flax, which is not installed: "
        "pip install 'seqnets[flax]'. seqnets' pure functions and the parameter converters "
        "(seqnets.interop) work without it."
    ) from error
import jax

from seqnets.cells.base import Cell, check_positive_int
from seqnets.sequence.stack import Stack, as_stack
from seqnets.types import Array


class RNN(nnx.Module):
    """A seqnets `Cell` or `Stack` as a Flax NNX module.

    Args:
      model: a seqnets `Cell` (run as a one-layer stack) or `Stack`; any cell, your own
        included.
      input_size: the width of the inputs' last axis.
      rngs: ``nnx.Rngs``: ``params`` (or the default stream) draws the parameters,
        ``dropout`` the dropout masks when the stack has dropout.
      deterministic: True turns dropout off; ``model.eval()`` and ``model.train()`` set
        it, as for ``nnx.Dropout``.

    ``unroll``, ``hoist``, ``mode``, ``chunk_size``, ``checkpoint`` and ``time_major`` are
    passed to ``stack.apply`` (see `seqnets.scan`).

    Call with ``xs (batch, time, features)`` (``(time, batch, features)`` with
    ``time_major``) and optional ``carry`` (a list with one dict per layer, as
    ``stack.initial_carry`` makes), ``lengths (batch,)``, ``resets (batch, time)``;
    returns ``ys (batch, time, output_size)``, or ``(carry, ys)`` with ``return_carry``.
    ``return_all_carries=True`` adds every step's carry: ``(carry, ys, carries)``.
    ``deterministic`` and ``rngs`` given to the call override the module's, as for
    ``nnx.Dropout``.
    """

    def __init__(
        self,
        model: Cell | Stack,
        input_size: int,
        *,
        rngs: nnx.Rngs,
        deterministic: bool = False,
        unroll: int | bool = 1,
        hoist: bool | None = None,
        mode: str = "auto",
        chunk_size: int | None = None,
        checkpoint: int | None = None,
        time_major: bool = False,
    ):
        model = as_stack(model, "seqnets.nnx.RNN")
        input_size = check_positive_int(input_size, "input_size", "seqnets.nnx.RNN")
        self.model = model
        self.input_size = input_size
        # One nnx.Param per array, in seqnets' list-of-dicts layout (see the module doc).
        self.params = nnx.data(jax.tree.map(nnx.Param, model.init(rngs.params(), input_size)))
        self.rngs = rngs["dropout"].fork() if model.has_dropout else nnx.data(None)
        self.deterministic = deterministic
        # A tuple, not a dict: static module attributes must be hashable.
        self.scan_options = (("unroll", unroll), ("hoist", hoist), ("mode", mode),
                             ("chunk_size", chunk_size), ("checkpoint", checkpoint),
                             ("time_major", time_major))

    @property
    def output_size(self) -> int:
        """The width of ``ys``."""
        return self.model.output_size

    def stack_params(self) -> list[dict[str, Any]]:
        """The parameters as plain arrays in seqnets' layout, for ``self.model.apply``."""
        return jax.tree.map(lambda v: v[...], self.params,
                            is_leaf=lambda v: isinstance(v, nnx.Variable))

    def __call__(
        self,
        xs: Array,
        *,
        carry: Any = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        return_carry: bool = False,
        return_all_carries: bool = False,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | Array | None = None,
    ) -> Any:
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None
        if not deterministic and (rngs is not None or self.rngs is not None):
            key = _key(rngs if rngs is not None else self.rngs)
        out = self.model.apply(self.stack_params(), xs, carry=carry, lengths=lengths,
                               resets=resets, key=key, return_all_carries=return_all_carries,
                               **dict(self.scan_options))
        if return_all_carries:
            return out
        carry, ys = out
        return (carry, ys) if return_carry else ys


def _key(rngs: Any) -> Array:
    if isinstance(rngs, nnx.Rngs):
        return rngs["dropout"]()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    return rngs
