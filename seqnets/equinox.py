"""Equinox: `RNN`, an ``eqx.Module`` that runs a seqnets cell or stack on one sequence.

Needs Equinox (``pip install 'seqnets[equinox]'``); ``import seqnets`` does not import
this module, and ``seqnets.equinox`` imports it on first use.

Equinox's layers take one example and leave batching to ``jax.vmap``; so does this one.
It is called on one unbatched sequence ``(time, features)``: it adds the batch axis of
one that seqnets' runner works with, and removes it again, so ``jax.vmap(rnn)(xs)`` over
a ``(batch, time, features)`` array runs the whole batch as one scan. The cell or stack
is a static field and the parameters a field holding seqnets' own layout (a list with
one ``{"forward": ...}`` dict per layer), so ``eqx.filter_jit``, ``eqx.filter_grad``
and optax see every array.

    >>> import jax, jax.numpy as jnp
    >>> import seqnets as sn
    >>> rnn = sn.equinox.RNN(sn.lstm(8), 3, key=jax.random.key(0))
    >>> rnn(jnp.ones((5, 3))).shape, jax.vmap(rnn)(jnp.ones((2, 5, 3))).shape
    ((5, 8), (2, 5, 8))
"""

from __future__ import annotations

from typing import Any

try:
    import equinox as eqx
except ImportError as error:  # pragma: no cover - exercised in environments without Equinox
    raise ImportError(
        "seqnets.equinox.RNN is an Equinox module and needs Equinox, which is not installed: "
        "pip install 'seqnets[equinox]'. seqnets' pure functions work without it."
    ) from error
import jax
import jax.numpy as jnp

from seqnets.cells.base import Cell, check_positive_int
from seqnets.sequence.stack import Stack, as_stack
from seqnets.types import Array


class RNN(eqx.Module):
    """A seqnets `Cell` or `Stack` as an Equinox module over one unbatched sequence.

    Args:
      model: a seqnets `Cell` (run as a one-layer stack) or `Stack`.
      input_size: the width of the inputs' last axis.
      key: a PRNG key for the parameters.
      inference: True turns dropout off; ``eqx.nn.inference_mode(model)`` sets it, as
        for ``eqx.nn.Dropout``.

    ``unroll``, ``hoist``, ``mode``, ``chunk_size`` and ``checkpoint`` are passed to
    ``stack.apply`` (see `seqnets.scan`).

    Call with ``xs (time, features)`` and optional ``carry`` (one sequence's carry: the
    stack's carry without its batch axis), ``lengths`` (a scalar: the sequence's valid
    steps) and ``resets (time,)``; returns ``ys (time, output_size)``, or ``(carry, ys)``
    with ``return_carry`` (``carry`` unbatched), or ``(carry, ys, carries)`` with
    ``return_all_carries``. Dropout needs ``key`` unless ``inference``.
    """

    params: list[dict[str, Any]]
    model: Stack = eqx.field(static=True)
    input_size: int = eqx.field(static=True)
    inference: bool = False
    scan_options: tuple[tuple[str, Any], ...] = eqx.field(static=True, default=())

    def __init__(
        self,
        model: Cell | Stack,
        input_size: int,
        *,
        key: Array,
        inference: bool = False,
        unroll: int | bool = 1,
        hoist: bool | None = None,
        mode: str = "auto",
        chunk_size: int | None = None,
        checkpoint: int | None = None,
    ):
        model = as_stack(model, "seqnets.equinox.RNN")
        self.input_size = check_positive_int(input_size, "input_size", "seqnets.equinox.RNN")
        self.model = model
        self.params = model.init(key, self.input_size)
        self.inference = inference
        self.scan_options = (("unroll", unroll), ("hoist", hoist), ("mode", mode),
                             ("chunk_size", chunk_size), ("checkpoint", checkpoint))

    @property
    def output_size(self) -> int:
        """The width of ``ys``."""
        return self.model.output_size

    def initial_carry(self) -> Any:
        """One sequence's initial carry (the stack's, without the batch axis)."""
        return _unbatch(self.model.initial_carry(1))

    def __call__(
        self,
        xs: Array,
        *,
        carry: Any = None,
        lengths: Array | int | None = None,
        resets: Array | None = None,
        return_carry: bool = False,
        return_all_carries: bool = False,
        key: Array | None = None,
        inference: bool | None = None,
    ) -> Any:
        if jnp.ndim(xs) != 2:
            raise ValueError(
                "seqnets.equinox.RNN takes one unbatched sequence (time, features), as "
                f"Equinox's layers take one example; got shape {jnp.shape(xs)}. For a batch, "
                "jax.vmap(rnn)(xs) over (batch, time, features)."
            )
        inference = self.inference if inference is None else inference
        if self.model.has_dropout and not inference and key is None:
            raise ValueError(
                "seqnets.equinox.RNN: the stack has dropout, which needs a key when not in "
                "inference mode: call rnn(xs, key=key), or eqx.nn.inference_mode(model) for "
                "evaluation."
            )
        if lengths is not None:
            if jnp.ndim(lengths) != 0:
                raise ValueError(
                    "seqnets.equinox.RNN: lengths is one sequence's number of valid steps, a "
                    f"scalar; got shape {jnp.shape(lengths)}. Batch with jax.vmap."
                )
            lengths = jnp.reshape(jnp.asarray(lengths), (1,))
        if resets is not None:
            resets = jnp.asarray(resets)[None]
        if carry is not None:
            carry = jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], carry)
        out = self.model.apply(
            self.params, xs[None], carry=carry, lengths=lengths, resets=resets,
            key=None if inference or not self.model.has_dropout else key,
            return_all_carries=return_all_carries, **dict(self.scan_options),
        )
        out = _unbatch(out)
        if return_all_carries:
            return out
        carry, ys = out
        return (carry, ys) if return_carry else ys


def _unbatch(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: leaf[0], tree)
