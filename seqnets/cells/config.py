"""How a cell or a stack was built, as data: rebuild it, change its dtypes, save it as JSON.

Every built-in constructor (`seqnets.lstm`, ..., `seqnets.stack`) is wrapped in
`seqnets.cells.base.cell_constructor`, which records on the model it returns a `Config`:
the constructor's name and its arguments. From it:

* `Config.rebuild` builds the same model again, with some arguments changed
  (``seqnets.stack(..., dtype=jnp.bfloat16)`` rebuilds each cell this way);
* `to_config` gives a JSON-ready dict of the arguments that differ from the defaults, and
  `from_config` builds the model back from that dict, in another process (the
  checkpoint folder's model configuration, `seqnets.training.Checkpointer`).

Arguments that are functions (an activation, an initializer) are saved by their public
name when they are one of JAX's or seqnets' own (``jax.nn.relu``,
``seqnets.cells.initializers.lecun_normal``); anything else that JSON cannot hold is an
error that names the argument. Constructors are found by name among the ones that
`cell_constructor` registered (importing a module registers its constructors), never by
importing what a file names.

    >>> import seqnets as sn
    >>> config = sn.to_config(sn.stack(sn.lstm(8), num_layers=2))
    >>> config["arguments"]["num_layers"], config["arguments"]["cells"]["constructor"]
    (2, 'seqnets.lstm')
    >>> sn.from_config(config) == sn.stack(sn.lstm(8), num_layers=2)
    True
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

# Namespaces whose public functions a config may name (activations, initializers).
FUNCTION_NAMESPACES = ("jax.nn", "jax.numpy", "jax.nn.initializers", "seqnets.cells.initializers")
_CONSTRUCTORS: dict[str, Callable[..., Any]] = {}


class Config(NamedTuple):
    """The constructor and the arguments (defaults filled in) a model was built with.

    Attributes:
      constructor: the registered name, ``"seqnets.lstm"`` for the built-in ones.
      arguments: ``((name, value), ...)``, every argument of the call; lists became tuples,
        so that the model stays hashable (a stable ``jax.jit`` static argument).
    """

    constructor: str
    arguments: tuple[tuple[str, Any], ...]

    def rebuild(self, **changes: Any) -> Any:
        """The model built again by its constructor, with ``changes`` to its arguments."""
        build = constructor(self.constructor)
        return build(**{**dict(self.arguments), **changes})

    def accepts(self, name: str) -> bool:
        """Whether the constructor has an argument ``name`` (e.g. ``"dtype"``)."""
        return name in dict(self.arguments)


def register_constructor(name: str, build: Callable[..., Any]) -> None:
    """Makes ``build`` findable by `from_config` under ``name`` (`cell_constructor` does it)."""
    _CONSTRUCTORS[name] = build


def constructor_name(build: Callable[..., Any]) -> str:
    """``seqnets.<name>`` for seqnets' own constructors, ``module.qualname`` for others."""
    module = build.__module__ or ""
    if module == "seqnets" or module.startswith("seqnets."):
        return f"seqnets.{build.__name__}"
    return f"{module}.{build.__qualname__}"


def constructor(name: str) -> Callable[..., Any]:
    """The registered constructor ``name``; ValueError that says how to register it."""
    try:
        return _CONSTRUCTORS[name]
    except KeyError:
        raise ValueError(
            f"no cell constructor named {name!r} is registered. Constructors register when "
            "their module is imported (a function wrapped in "
            "seqnets.cells.base.cell_constructor): import the module that defines it first."
        ) from None


def to_config(model: Any) -> dict[str, Any]:
    """A JSON-ready description of ``model`` (a cell or a stack) that `from_config` rebuilds.

    Only the arguments that differ from the constructor's defaults are written.

    Raises:
      ValueError: when ``model`` was not built by a registered constructor (a cell made
        with ``make_cell`` directly), or one of its arguments is a value JSON cannot hold
        and seqnets cannot name (a lambda, a closure such as ``initializers.identity(0.5)``).
    """
    config = getattr(model, "config", None)
    if not isinstance(config, Config):
        raise ValueError(
            f"to_config: {getattr(model, 'name', type(model).__name__)!r} was not built by a "
            "seqnets cell constructor, so there is no configuration to save. Wrap the function "
            "that builds it in seqnets.cells.base.cell_constructor."
        )
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(constructor(config.constructor)).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    arguments = {}
    for name, value in config.arguments:
        if name in defaults and _same(value, defaults[name]):
            continue
        arguments[name] = _encode(value, f"{config.constructor}({name}=...)")
    return {"constructor": config.constructor, "arguments": arguments}


def from_config(config: dict[str, Any]) -> Any:
    """The model `to_config` described, built by its registered constructor."""
    if not isinstance(config, dict) or "constructor" not in config:
        raise ValueError("from_config expects a dict with 'constructor' and 'arguments', as "
                         f"to_config returns; got {config!r:.100}.")
    build = constructor(config["constructor"])
    arguments = {name: _decode(value) for name, value in config.get("arguments", {}).items()}
    return build(**arguments)


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value is default or (type(value) is type(default) and value == default))
    except Exception:  # arrays and other values without a plain ==
        return False


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(getattr(value, "config", None), Config):
        return to_config(value)
    if type(value) in (list, tuple):
        return [_encode(v, where) for v in value]
    dtype = as_dtype(value)
    if dtype is not None:
        return {"dtype": dtype.name}
    if callable(value):
        name = _public_name(value)
        if name is not None:
            return {"function": name}
    raise ValueError(
        f"to_config: {where} is {value!r:.80}, which a JSON configuration cannot hold: pass "
        "one of JAX's or seqnets' own functions (e.g. jax.nn.relu, "
        "seqnets.cells.initializers.orthogonal), or save the configuration yourself."
    )


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if "constructor" in value:
            return from_config(value)
        if set(value) == {"dtype"}:
            return np.dtype(_dtype_by_name(value["dtype"]))
        if set(value) == {"function"}:
            return _function(value["function"])
    return value


def as_dtype(value: Any) -> np.dtype | None:
    """``value`` as a NumPy dtype when it names one (``jnp.float32``, ``np.dtype``)."""
    if isinstance(value, np.dtype):
        return value
    if isinstance(value, type) and (issubclass(value, np.generic)
                                    or isinstance(getattr(value, "dtype", None), np.dtype)):
        return np.dtype(getattr(value, "dtype", value))
    return None


def _dtype_by_name(name: str) -> Any:
    import jax.numpy as jnp  # bfloat16 is JAX's (ml_dtypes), not a NumPy name

    return jnp.dtype(name)


def _public_name(function: Any) -> str | None:
    for namespace in FUNCTION_NAMESPACES:
        module = importlib.import_module(namespace)
        for attribute, candidate in vars(module).items():
            if candidate is function and not attribute.startswith("_"):
                return f"{namespace}.{attribute}"
    return None


def _function(name: str) -> Any:
    namespace, _, attribute = name.rpartition(".")
    if namespace not in FUNCTION_NAMESPACES or attribute.startswith("_"):
        raise ValueError(f"from_config: {name!r} is not a function of {FUNCTION_NAMESPACES}; "
                         "a configuration names only those.")
    return getattr(importlib.import_module(namespace), attribute)
