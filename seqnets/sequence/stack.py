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

from seqnets.cells.base import Array, Cell, cell_constructor, check_params, describe_tree
from seqnets.cells.config import Config
from seqnets.ops.masks import check_lengths
from seqnets.sequence.dropout import dropout as apply_dropout
from seqnets.sequence.dropout import state_dropout
from seqnets.sequence.runner import scan

StackParams = list[dict[str, Any]]
StackCarry = list[dict[str, Any]]


MERGES = ("concat", "sum", "mean")


class Stack(NamedTuple):
    """Layers of recurrent cells as pure functions; build one with `seqnets.stack`.

    Attributes:
      init: ``(key, input_size) -> params``, a list with one dict per layer.
      initial_carry: ``(batch_size) -> carry``, a list with one dict per layer.
      apply: ``(params, xs, *, carry=None, lengths=None, resets=None, key=None,
        time_major=False, unroll=1, hoist=None, mode="auto", chunk_size=None,
        checkpoint=None, return_all_carries=False) -> (carry, ys)``;
        ``xs (batch, time, input_size)``, ``ys (batch, time, output_size)``. Dropout runs
        between layers only when ``key`` is given. With ``return_all_carries``,
        ``(carry, ys, carries)``: ``carries`` has the carry's layout, each leaf with a
        time axis after the batch axis (`seqnets.scan`).
      step: ``(params, carry, x_t) -> (carry, y_t)``: one time step through every layer
        (unidirectional stacks only), ``x_t (batch, input_size)``, ``y_t (batch,
        output_size)``; the same as ``apply`` on a sequence of one step, without dropout.
      cells: the cell of each layer.
      bidirectional: whether each layer also runs backward.
      dropout: the dropout rate between layers.
      output_size: width of ``ys``: the last layer's output width (for a bidirectional
        stack, what ``merge`` makes of two ``hidden_size``-wide outputs).
      recurrent_dropout: the rate of the variational dropout on each layer's recurrent
        state (`seqnets.sequence.dropout.state_dropout`).
      variational: whether the dropout between layers uses one mask per sequence.
      residual: whether every layer after the first adds its input to its output.
      merge: how a bidirectional layer combines its two directions: ``"concat"``,
        ``"sum"``, ``"mean"`` or a function ``(forward, backward) -> merged``.
      config: how the stack was built (`seqnets.cells.config.Config`).
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
    residual: bool = False
    merge: str | Callable[[Array, Array], Array] = "concat"
    config: Config | None = None

    @property
    def has_dropout(self) -> bool:
        """Whether ``apply`` draws dropout masks when it is given a ``key``."""
        return self.dropout > 0.0 or self.recurrent_dropout > 0.0


def as_stack(model: Cell | Stack, where: str) -> Stack:
    """``model`` as a `Stack`: a `Cell` becomes a one-layer stack; ValueError for anything
    else, naming ``where`` (the module that was given it)."""
    if isinstance(model, Cell):
        return stack(model)
    if not isinstance(model, Stack):
        raise ValueError(f"{where}: model must be a seqnets Cell or Stack (e.g. sn.lstm(128)); "
                         f"got {type(model).__name__}.")
    return model


@cell_constructor
def stack(
    cells: Cell | Sequence[Cell],
    *,
    num_layers: int | None = None,
    bidirectional: bool = False,
    merge: str | Callable[[Array, Array], Array] = "concat",
    residual: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    variational: bool = False,
    dtype: Any = None,
    param_dtype: Any = None,
) -> Stack:
    """Stacks recurrent layers.

    Args:
      cells: one `Cell` used for every layer, or one cell per layer.
      num_layers: how many layers when ``cells`` is a single cell (default 1).
      bidirectional: run each layer forward and backward and merge the two outputs.
      merge: how a bidirectional layer merges its directions' outputs, as Flax's
        ``Bidirectional(merge_fn)``: ``"concat"`` (forward first, along the feature axis;
        twice the width), ``"sum"``, ``"mean"``, or a function ``(forward, backward) ->
        merged`` of two ``(batch, time, hidden)`` arrays (``(time, batch, hidden)`` with
        ``time_major``) that keeps the leading axes.
      residual: residual (skip) connections: every layer after the first adds its input
        to its output, ``x_{k+1} = x_k + layer_k(x_k)`` (after the dropout between layers),
        so those layers' outputs must be as wide as their inputs. The first layer has
        none: its input is the data, usually of another width.
      dropout: rate of the dropout applied to the outputs of every layer but the last.
      recurrent_dropout: rate of the variational dropout on every layer's incoming
        recurrent state: one mask per sequence (per call), the same at every step, on the
        carry's last leaf (``h``); see `seqnets.sequence.dropout`. Training only (``key``).
      variational: the dropout between layers draws one mask per sequence, shared by
        every step (Gal & Ghahramani 2016), instead of a fresh mask per step.
      dtype: the compute dtype of every layer (`seqnets.cells.dtypes`); each cell is
        rebuilt by its constructor with it. None keeps each cell's own.
      param_dtype: the parameters' dtype of every layer, likewise.

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
    if dtype is not None or param_dtype is not None:
        cells = tuple(_with_dtypes(cell, dtype, param_dtype) for cell in cells)
    directions = ("forward", "backward") if bidirectional else ("forward",)
    merged = _merger(merge)
    widths = [_merged_width(merged, cell.hidden_size, bidirectional) for cell in cells]
    if residual:
        for layer in range(1, len(cells)):
            if widths[layer] != widths[layer - 1]:
                raise ValueError(
                    f"stack(residual=True): layer {layer} outputs {widths[layer]} features from "
                    f"an input of {widths[layer - 1]}, so its input cannot be added to its "
                    "output. Give every layer after the first the previous layer's width."
                )

    def init(key: Array, input_size: int) -> StackParams:
        params = []
        for layer, (cell, layer_key) in enumerate(zip(cells, jax.random.split(key, len(cells)),
                                                      strict=True)):
            keys = jax.random.split(layer_key, len(directions))
            params.append({d: cell.init(k, input_size) for d, k in zip(directions, keys, strict=True)})
            input_size = widths[layer]
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
        return_all_carries: bool = False,
    ) -> tuple[StackCarry, Array] | tuple[StackCarry, Array, StackCarry]:
        _check_layers(params, carry, len(cells), "stack.apply")
        check_params(init, params, jnp.shape(xs)[-1], where="seqnets.stack")
        if carry is None:
            carry = [dict.fromkeys(directions) for _ in cells]
        new_carry, all_carries = [], []
        for layer, cell in enumerate(cells):
            layer_carry, layer_carries, outputs = {}, {}, []
            for d in directions:
                layer_cell = cell
                if key is not None and recurrent_dropout > 0.0:
                    key, state_key = jax.random.split(key)
                    batch = jnp.shape(xs)[1 if time_major else 0]
                    layer_cell = state_dropout(cell, state_key, batch, recurrent_dropout)
                result = scan(
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
                    return_all_carries=return_all_carries,
                )
                layer_carry[d], ys = result[:2]
                if return_all_carries:
                    layer_carries[d] = result[2]
                outputs.append(ys)
            new_carry.append(layer_carry)
            all_carries.append(layer_carries)
            ys = outputs[0] if len(outputs) == 1 else merged(*outputs)
            if key is not None and dropout > 0.0 and layer < len(cells) - 1:
                key, dropout_key = jax.random.split(key)
                ys = apply_dropout(dropout_key, ys, dropout, variational=variational,
                                   time_axis=0 if time_major else 1)
            xs = xs + ys if residual and layer > 0 else ys
        return (new_carry, xs, all_carries) if return_all_carries else (new_carry, xs)

    def step(params: StackParams, carry: StackCarry, x_t: Array) -> tuple[StackCarry, Array]:
        if bidirectional:
            raise ValueError(
                "stack.step: a bidirectional stack has no one-step form, since its backward "
                "direction reads the whole sequence first; run stack.apply on the sequence."
            )
        _check_layers(params, carry, len(cells), "stack.step")
        new_carry = []
        for layer, cell in enumerate(cells):
            layer_carry, y_t = cell.apply(params[layer]["forward"], carry[layer]["forward"], x_t)
            new_carry.append({"forward": layer_carry})
            x_t = x_t + y_t if residual and layer > 0 else y_t
        return new_carry, x_t

    return Stack(
        init, initial_carry, apply, cells, bidirectional, dropout, widths[-1],
        recurrent_dropout, variational, step, residual, merge,
    )


def _with_dtypes(cell: Cell, dtype: Any, param_dtype: Any) -> Cell:
    """``cell`` rebuilt by its constructor with the stack's dtypes (those that are not None)."""
    changes = {k: v for k, v in (("dtype", dtype), ("param_dtype", param_dtype)) if v is not None}
    config = cell.config
    if config is None or not all(config.accepts(k) for k in changes):
        raise ValueError(
            f"stack({', '.join(f'{k}=...' for k in changes)}): the {cell.name!r} cell was not "
            "built by a seqnets cell constructor that takes these dtypes, so the stack cannot "
            "rebuild it with them. Build the cell with the dtypes you want and leave the "
            "stack's dtype and param_dtype at None."
        )
    return config.rebuild(**changes)


def _merger(merge: Any) -> Callable[[Array, Array], Array]:
    """The function that merges a bidirectional layer's two outputs."""
    if callable(merge):
        return merge
    if merge == "concat":
        return lambda forward, backward: jnp.concatenate([forward, backward], axis=-1)
    if merge == "sum":
        return lambda forward, backward: forward + backward
    if merge == "mean":
        return lambda forward, backward: (forward + backward) / 2
    raise ValueError(f"stack: merge must be one of {MERGES} or a function (forward, backward) -> "
                     f"merged; got {merge!r}.")


def _merged_width(merged: Callable[[Array, Array], Array], hidden: int, bidirectional: bool) -> int:
    """A layer's output width: ``hidden``, or what ``merged`` makes of two such outputs."""
    if not bidirectional:
        return hidden
    half = jax.ShapeDtypeStruct((1, 1, hidden), jnp.float32)
    try:
        out = jax.eval_shape(merged, half, half)
    except Exception as error:
        raise ValueError(f"stack: merge failed on two (batch, time, {hidden}) outputs: "
                         f"{type(error).__name__}: {error}") from error
    if not hasattr(out, "shape") or len(out.shape) != 3 or out.shape[:2] != (1, 1):
        raise ValueError(
            f"stack: merge must return one (batch, time, features) array from two (batch, time, "
            f"{hidden}) outputs; it returned {getattr(out, 'shape', type(out).__name__)} for "
            "(1, 1, ...) inputs."
        )
    return int(out.shape[-1])


def _check_layers(params: Any, carry: Any, layers: int, where: str) -> None:
    """ValueError unless ``params`` (and ``carry``) are lists with one entry per layer."""
    for name, value in (("params", params), ("carry", carry)):
        if value is None:
            continue
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
            made_by = "stack.init" if name == "params" else "stack.initial_carry(batch)"
            raise ValueError(
                f"{where}: {name} must be a list with one dict per layer "
                f'({{"forward": ...}}), as {made_by} returns; got {describe_tree(value)}. '
                f"That looks like a single cell's {name}: a cell runs with seqnets.scan or "
                f"cell.apply, or wrap it for the stack as [{{'forward': {name}}}]."
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
        if bidirectional and not (isinstance(stack.merge, str) and stack.merge == "concat"):
            raise ValueError(
                f"final_outputs: the stack merges its two directions with {stack.merge!r}, so "
                "its outputs have no forward and backward halves to read. Build it with "
                "merge='concat', or read the summary you want from ys yourself."
            )
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
