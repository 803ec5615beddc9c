"""`stack`: layers of cells run one full sequence at a time, optionally bidirectional.

Each layer is a whole-sequence `scan`, so every layer's input projection can be hoisted
out of its time loop. Parameters and carries are lists with one dict per layer,
``{"forward": ...}`` or ``{"forward": ..., "backward": ...}``. A unidirectional stack is
itself a core, as Haiku's ``DeepRNN`` is: ``stack.step`` runs one time step through every
layer, for sampling one token at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqnets.cells.base import Array, Cell, cell_constructor, check_params
from seqnets.ops.masks import check_lengths
from seqnets.sequence.dropout import dropout as apply_dropout
from seqnets.sequence.dropout import state_dropout
from seqnets.sequence.scan import scan

StackParams = list[dict[str, Any]]
StackCarry = list[dict[str, Any]]


class Stack(NamedTuple):
    """Layers of recurrent cells as pure functions; build one with `seqnets.stack`.

    Attributes:
      init: ``(key, input_size) -> params``, a list with one dict per layer.
      initial_carry: ``(batch_size) -> carry``, a list with one dict per layer.
      apply: ``(params, xs, *, carry=None, lengths=None, resets=None, key=None,
        time_major=False, unroll=1, hoist=None, mode="auto", chunk_size=None,
        checkpoint=None) -> (carry, ys)``; ``xs (batch, time, input_size)``,
        ``ys (batch, time, output_size)``. Dropout runs between layers only when ``key``
        is given.
      step: ``(params, carry, x_t) -> (carry, y_t)``: one time step through every layer
        (unidirectional stacks only), ``x_t (batch, input_size)``, ``y_t (batch,
        output_size)``; the same as ``apply`` on a sequence of one step, without dropout.
      cells: the cell of each layer.
      bidirectional: whether each layer also runs backward (outputs concatenated).
      dropout: the dropout rate between layers.
      output_size: width of ``ys``: the last cell's hidden size, times 2 if bidirectional.
      recurrent_dropout: the rate of the variational dropout on each layer's recurrent
        state (`seqnets.sequence.dropout.state_dropout`).
      variational: whether the dropout between layers uses one mask per sequence.
    """

    init: Callable[[Array, int], list]
    initial_carry: Callable[[int], list]
    apply: Callable[..., tuple[list, Array]]
    cells: tuple[Cell, ...]
    bidirectional: bool
    dropout: float
    output_size: int
    recurrent_dropout: float = 0.0
    variational: bool = False
    step: Callable[..., tuple[list, Array]] | None = None


@cell_constructor
def stack(
    cells: Cell | Sequence[Cell],
    *,
    num_layers: int | None = None,
    bidirectional: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    variational: bool = False,
) -> Stack:
    """Stacks recurrent layers.

    Args:
      cells: one `Cell` used for every layer, or one cell per layer.
      num_layers: how many layers when ``cells`` is a single cell (default 1).
      bidirectional: run each layer forward and backward and concatenate the outputs,
        forward first, along the feature axis.
      dropout: rate of the dropout applied to the outputs of every layer but the last.
      recurrent_dropout: rate of the variational dropout on every layer's incoming
        recurrent state: one mask per sequence (per call), the same at every step, on the
        carry's last leaf (``h``); see `seqnets.sequence.dropout`. Training only (``key``).
      variational: the dropout between layers draws one mask per sequence, shared by
        every step (Gal & Ghahramani 2016), instead of a fresh mask per step.

    Returns:
      A `Stack`. Stacks built alike are the same object (a stable ``jax.jit`` static
      argument), as cells are.
    """
    if isinstance(cells, Cell):
        cells = (cells,) * (1 if num_layers is None else num_layers)
    else:
        cells = tuple(cells)
        if num_layers is not None and num_layers != len(cells):
            raise ValueError(f"num_layers={num_layers} but {len(cells)} cells were given.")
    if not cells or not all(isinstance(c, Cell) for c in cells):
        raise ValueError("stack needs at least one seqnets Cell (and only Cells).")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1); got {dropout}.")
    if not 0.0 <= recurrent_dropout < 1.0:
        raise ValueError(f"recurrent_dropout must lie in [0, 1); got {recurrent_dropout}.")
    directions = ("forward", "backward") if bidirectional else ("forward",)
    width = 2 if bidirectional else 1

    def init(key: Array, input_size: int) -> StackParams:
        params = []
        for cell, layer_key in zip(cells, jax.random.split(key, len(cells)), strict=True):
            keys = jax.random.split(layer_key, len(directions))
            params.append({d: cell.init(k, input_size) for d, k in zip(directions, keys, strict=True)})
            input_size = width * cell.hidden_size
        return params

    def initial_carry(batch_size: int) -> StackCarry:
        return [{d: cell.initial_carry(batch_size) for d in directions} for cell in cells]

    def apply(
        params: StackParams,
        xs: Array,
        *,
        carry: StackCarry | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        key: Array | None = None,
        time_major: bool = False,
        unroll: int | bool = 1,
        hoist: bool | None = None,
        mode: str = "auto",
        chunk_size: int | None = None,
        checkpoint: int | None = None,
    ) -> tuple[StackCarry, Array]:
        if len(params) != len(cells):
            raise ValueError(f"params has {len(params)} layers; the stack has {len(cells)}.")
        check_params(init, params, jnp.shape(xs)[-1], where="seqnets.stack")
        if carry is None:
            carry = [dict.fromkeys(directions) for _ in cells]
        elif len(carry) != len(cells):
            raise ValueError(f"carry has {len(carry)} layers; the stack has {len(cells)}.")
        feature_axis = -1
        new_carry = []
        for layer, cell in enumerate(cells):
            layer_carry, outputs = {}, []
            for d in directions:
                layer_cell = cell
                if key is not None and recurrent_dropout > 0.0:
                    key, state_key = jax.random.split(key)
                    batch = jnp.shape(xs)[1 if time_major else 0]
                    layer_cell = state_dropout(cell, state_key, batch, recurrent_dropout)
                layer_carry[d], ys = scan(
                    layer_cell,
                    params[layer][d],
                    xs,
                    carry=carry[layer][d],
                    lengths=lengths,
                    resets=resets,
                    reverse=d == "backward",
                    time_major=time_major,
                    unroll=unroll,
                    hoist=hoist,
                    mode=mode,
                    chunk_size=chunk_size,
                    checkpoint=checkpoint,
                )
                outputs.append(ys)
            new_carry.append(layer_carry)
            xs = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, feature_axis)
            if key is not None and dropout > 0.0 and layer < len(cells) - 1:
                key, dropout_key = jax.random.split(key)
                xs = apply_dropout(dropout_key, xs, dropout, variational=variational,
                                   time_axis=0 if time_major else 1)
        return new_carry, xs

    def step(params: StackParams, carry: StackCarry, x_t: Array) -> tuple[StackCarry, Array]:
        if bidirectional:
            raise ValueError(
                "stack.step: a bidirectional stack has no one-step form, since its backward "
                "direction reads the whole sequence first; run stack.apply on the sequence."
            )
        _check_layers(params, carry, len(cells), "stack.step")
        new_carry = []
        for layer, cell in enumerate(cells):
            layer_carry, x_t = cell.apply(params[layer]["forward"], carry[layer]["forward"], x_t)
            new_carry.append({"forward": layer_carry})
        return new_carry, x_t

    return Stack(
        init, initial_carry, apply, cells, bidirectional, dropout, width * cells[-1].hidden_size,
        recurrent_dropout, variational, step,
    )


def _check_layers(params: Any, carry: Any, layers: int, where: str) -> None:
    """ValueError unless ``params`` (and ``carry``) are lists with one entry per layer."""
    for name, value in (("params", params), ("carry", carry)):
        if value is None:
            continue
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
            raise ValueError(
                f"{where}: {name} must be a list with one dict per layer "
                '({"forward": ...}), as stack.init and stack.initial_carry return; got '
                f"{type(value).__name__}. A single cell's {name} belongs to cell.apply."
            )
        if len(value) != layers:
            raise ValueError(f"{where}: {name} has {len(value)} layers; the stack has {layers}.")


def final_outputs(
    ys: Array,
    *,
    lengths: Array | None = None,
    stack: Stack | None = None,
    bidirectional: bool | None = None,
) -> Array:
    """The summary of each sequence that a classifier head reads, ``(batch, features)``.

    Args:
      ys: outputs of `scan` or ``stack.apply``, ``(batch, time, features)``.
      lengths: optional int ``(batch,)``; the forward output is read at ``lengths - 1``
        (rows of length 0 give zeros).
      stack: the `Stack` that produced ``ys``; when it is bidirectional, the second half
        of the features comes from the backward run, whose summary of the whole sequence
        is its output at step 0. None for the output of a plain `scan`.
      bidirectional: deprecated; pass ``stack=`` instead.

    Returns:
      ``(batch, features)``: the forward output after each row's last valid step, and for
      a bidirectional stack the backward output at step 0 concatenated after it.

    Raises:
      ValueError: when ``ys`` is not rank 3, has no steps and no ``lengths``, or
        ``lengths`` is not int ``(batch,)`` in ``[0, time]``.
    """
    if bidirectional is not None:
        warnings.warn("final_outputs(bidirectional=...) is deprecated: pass stack=, the Stack "
                      "that produced ys.", DeprecationWarning, stacklevel=2)
    if stack is not None:
        if bidirectional is not None and bidirectional != stack.bidirectional:
            raise ValueError(f"bidirectional={bidirectional} contradicts the stack's "
                             f"bidirectional={stack.bidirectional}.")
        if ys.shape[-1] != stack.output_size:
            raise ValueError(f"final_outputs: ys has {ys.shape[-1]} features; the stack "
                             f"outputs {stack.output_size}.")
        bidirectional = stack.bidirectional
    if jnp.ndim(ys) != 3:
        raise ValueError(f"final_outputs: ys must be (batch, time, features); got shape "
                         f"{jnp.shape(ys)}.")
    batch, time = ys.shape[:2]
    if lengths is None:
        if time == 0:
            raise ValueError("final_outputs: ys has no time steps, so there is no last output; "
                             "pass lengths (all 0) to get zeros for empty sequences.")
        last = ys[:, time - 1]
    else:
        lengths = check_lengths(lengths, batch, time, "final_outputs")
        if time == 0:
            return jnp.zeros((batch, ys.shape[-1]), ys.dtype)
        index = jnp.clip(lengths - 1, 0, time - 1)
        last = jnp.take_along_axis(ys, index[:, None, None], axis=1)[:, 0]
        last = jnp.where((lengths > 0)[:, None], last, 0.0)
    if not bidirectional:
        return last
    half = ys.shape[-1] // 2
    return jnp.concatenate([last[:, :half], ys[:, 0, half:]], axis=-1)
