"""The interop registry: one `Converter` per framework and seqnets cell.

A converter is a pair of functions over plain mappings of arrays: ``read`` takes the
framework's parameters and returns seqnets' (`seqnets.lstm`'s ``{"w_x", "w_h", "b"}``,
or `stack` parameters where the framework has a layers module), ``write`` goes back.
The entry points, one per direction and framework (`seqnets.interop.from_flax`,
`to_flax`, `from_torch`, `to_torch`), look the converter up by the framework and the
cell's ``name`` (``"lstm"``, ``"gru"``, ``"elman"``); a new cell is one `register` call
per framework, and a new framework is a module of converters that registers them and
defines its two entry points.

Given a `Cell` rather than a bare name, the entry points also check the parameters
against ``cell.init`` (names, shapes, dtypes), so that parameters of another hidden size
are refused with a message that says so, not at the first scan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from seqnets.cells.base import Cell, check_params
from seqnets.sequence.stack import Stack

CellParams = dict[str, Any]


def rows_of_w_x(params: Mapping[str, Any]) -> int:
    """The input size of a cell whose input matrix is ``w_x (input_size, ...)``."""
    return int(params["w_x"].shape[0])


class Converter(NamedTuple):
    """How one seqnets cell's parameters map to one framework's.

    Attributes:
      read: framework parameters -> seqnets parameters.
      write: seqnets parameters -> framework parameters; it may take keyword options that
        its framework's entry point passes (`seqnets.interop.to_nnx`'s ``fused``).
      counterpart: the framework's name for the cell, for messages and docs
        (``"flax.linen.LSTMCell, OptimizedLSTMCell"``).
      input_size: seqnets parameters of one cell -> its input size, so that they can be
        checked against ``cell.init`` (default: the rows of ``w_x``).
    """

    read: Callable[[Any], Any]
    write: Callable[[Any], Any]
    counterpart: str
    input_size: Callable[[Mapping[str, Any]], int] = rows_of_w_x


_CONVERTERS: dict[tuple[str, str], Converter] = {}


def register(framework: str, cell: str, converter: Converter) -> None:
    """Makes ``cell`` (a seqnets cell's ``name``) convertible to and from ``framework``.

    Raises:
      ValueError: when that pair is registered already.
    """
    if (framework, cell) in _CONVERTERS:
        raise ValueError(f"a {framework} converter for the {cell!r} cell is registered already.")
    _CONVERTERS[(framework, cell)] = converter


def registered(framework: str | None = None) -> dict[tuple[str, str], Converter]:
    """The registered converters by ``(framework, cell name)``, of one framework or all."""
    return {k: v for k, v in _CONVERTERS.items() if framework in (None, k[0])}


def cell_name(model: Cell | Stack | str, where: str) -> str:
    """The cell name of a `Cell`, a name, or a `Stack` whose layers are all one kind of cell."""
    if isinstance(model, str):
        return model
    if isinstance(model, Cell):
        return model.name
    if isinstance(model, Stack):
        names = sorted({c.name for c in model.cells})
        if len(names) > 1:
            raise ValueError(f"{where}: the stack mixes cells {names}; a framework's layers "
                             "module has one kind of cell. Convert each layer on its own.")
        return names[0]
    raise ValueError(f"{where}: expected a seqnets Cell (e.g. seqnets.lstm(8)), a Stack, or a "
                     f"cell name such as 'lstm'; got {type(model).__name__}.")


def converter(framework: str, cell: str, where: str) -> Converter:
    """The converter of ``(framework, cell)``; a ValueError lists what is registered."""
    found = _CONVERTERS.get((framework, cell))
    if found is None:
        known = sorted(c for f, c in _CONVERTERS if f == framework)
        raise ValueError(
            f"{where}: no {framework} converter for the {cell!r} cell; {framework} converters "
            f"exist for {known}. A cell of your own can be added with "
            "seqnets.interop.register(framework, name, Converter(read, write, counterpart))."
        )
    return found


def lookup(tree: Mapping[str, Any], path: tuple[str, ...], source: str, hint: str) -> Any:
    """The leaf at ``path`` of the nested mappings ``tree`` (a framework's parameters).

    Raises:
      ValueError: when a name on ``path`` is missing; it names the path, the keys found
        where it stopped, and ``hint`` (what to pass instead). ``source`` names the
        framework ("Flax", "NNX").
    """
    node = tree
    for name in path:
        if not isinstance(node, Mapping) or name not in node:
            found = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise ValueError(f"{source} parameters lack {'/'.join(path)}; found keys {found}. "
                             f"{hint}")
        node = node[name]
    return node


def check_cell_params(params: Mapping[str, Any], cell: Cell, conv: Converter, where: str) -> None:
    """Raises ValueError unless ``params`` is what ``cell.init`` makes for their input size."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: expected one {cell.name} cell's params (a dict); got "
                         f"{type(params).__name__}.")
    try:
        input_size = conv.input_size(params)
    except (KeyError, AttributeError, IndexError) as error:
        raise ValueError(f"{where}: these are not {cell.name} parameters: found keys "
                         f"{sorted(params)}.") from error
    check_params(cell.init, params, input_size, where)


def check_flax_model(model: Any, framework: str, where: str) -> str:
    """The cell name of ``model`` for Flax's cells (linen or NNX), which are single cells
    with biases and no projection; a ValueError names what Flax cannot hold."""
    if isinstance(model, Stack):
        raise ValueError(
            f"{where}: Flax {'linen' if framework == 'flax' else 'NNX'} has no layers module, so "
            f"there is no {framework} form of a stack's parameters: convert each layer's cell, "
            f"[{{'forward': from_{framework}(p, cell)}} for p in layers], which is what "
            "seqnets.stack params are."
        )
    if isinstance(model, Cell) and model.config is not None:
        arguments = dict(model.config.arguments)
        if arguments.get("proj_size") is not None:
            raise ValueError(f"{where}: Flax's LSTM cells have no output projection; this "
                             f"{model.name} has proj_size={arguments['proj_size']}.")
        if arguments.get("use_bias") is False:
            raise ValueError(f"{where}: Flax's recurrent cells always have biases; this "
                             f"{model.name} was built with use_bias=False.")
    return cell_name(model, where)
