"""The cell contract: a recurrent cell is a NamedTuple of pure functions.

A step of every seqnets cell splits in two:

* ``project(params, x)``: the part that does not depend on the carry, an affine map of the
  input, ``(..., input_size) -> (..., projection_size)``. It works on any leading axes, so
  the sequence runner computes it for every time step at once, as one large matmul
  outside ``lax.scan``.
* ``step(params, carry, projected_t)``: the recurrent update, ``h @ W_h`` plus the
  elementwise gate math, the only work left inside the scan.

``apply`` composes the two for a single step on a raw input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqnets.backend import fuse_small_matmul
from seqnets.types import Array, Carry, Initializer, Params  # noqa: F401  (re-exported)


class Cell(NamedTuple):
    """A recurrent cell as pure functions; build one with `seqnets.lstm`, `gru` or `elman`.

    Attributes:
      init: ``(key, input_size) -> params``, a dict of float32 arrays.
      initial_carry: ``(batch_size) -> carry`` of zeros, each leaf ``(batch, hidden_size)``.
      project: ``(params, x) -> projected``; ``x`` is ``(..., input_size)``, the result
        ``(..., projection_size)``, float32.
      step: ``(params, carry, projected_t) -> (carry, h)``; ``projected_t`` is
        ``(batch, projection_size)``, ``h`` is ``(batch, hidden_size)``.
      apply: ``(params, carry, x_t) -> (carry, h)``; one step on a raw input
        ``x_t: (batch, input_size)``, the same as ``step(params, carry, project(params, x_t))``.
      hidden_size: the width of ``h``.
      name: ``"lstm"``, ``"gru"``, ``"elman"`` or a name of your own.
    """

    init: Callable[[Array, int], Params]
    initial_carry: Callable[[int], Carry]
    project: Callable[[Params, Array], Array]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    apply: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    name: str


def make_cell(
    *,
    init: Callable[[Array, int], Params],
    initial_carry: Callable[[int], Carry],
    project: Callable[[Params, Array], Array],
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]],
    hidden_size: int,
    name: str,
) -> Cell:
    """Builds a `Cell` whose ``apply`` is ``step`` after ``project``.

    Use it to write a cell of your own that `seqnets.scan` and `seqnets.stack` can run.
    """

    def apply(params: Params, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        if jnp.ndim(x_t) != 2:
            raise ValueError(
                f"{name}.apply expects x_t of shape (batch, input_size); got shape "
                f"{jnp.shape(x_t)}. For a whole sequence use seqnets.scan."
            )
        check_carry(initial_carry, carry, x_t.shape[0], where=f"{name}.apply")
        projected = project(params, x_t)  # the built-in cells name a wrong input size here
        check_params(init, params, x_t.shape[-1], where=f"{name}.apply")
        return step(params, carry, projected)

    return Cell(init, initial_carry, project, step, apply, hidden_size, name)


def check_hidden_size(hidden_size: int) -> None:
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int; got {hidden_size!r}.")


def check_input(params: Params, x: Array, where: str) -> None:
    """Raises ValueError when ``x``'s last axis does not match ``params['w_x']``."""
    expected = params["w_x"].shape[0]
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != expected:
        raise ValueError(
            f"{where}: input size mismatch: the parameters expect inputs of shape "
            f"(..., {expected}); got shape {jnp.shape(x)}."
        )
    if not (jnp.issubdtype(jnp.result_type(x), jnp.floating)
            or jnp.issubdtype(jnp.result_type(x), jnp.integer)
            or jnp.result_type(x) == jnp.bool_):
        raise ValueError(f"{where}: inputs must be real numbers; got dtype {jnp.result_type(x)}.")


@functools.lru_cache(maxsize=256)
def _expected_params(init: Callable[[Array, int], Params], input_size: int):
    # Abstract evaluation of init: shapes and dtypes only, no arrays. Cached because tracing
    # an init costs tens of milliseconds and scan checks on every call (and every trace).
    # The key is made inside, so that nothing is staged into a trace the caller is in.
    abstract = jax.eval_shape(lambda: init(jax.random.key(0), input_size))
    return {_path(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}


def _path(path: Any) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def check_params(
    init: Callable[[Array, int], Params], params: Params, input_size: int, where: str
) -> None:
    """Raises ValueError unless ``params`` fits what ``init(key, input_size)`` returns.

    Compares the tree (parameter names), each leaf's shape and its dtype with
    ``jax.eval_shape`` of ``init``, so it covers any cell or stack, your own included. The
    message names the parameters that are missing or unexpected, or the parameter whose
    shape or dtype differs, with what was expected and what was given.
    """
    try:
        expected = _expected_params(init, int(input_size))
    except TypeError:  # an unhashable init: check without the cache
        expected = _expected_params.__wrapped__(init, int(input_size))
    got = {_path(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{where}: the parameters do not match the cell for input size {input_size}: "
            + "; ".join(part for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(unexpected)}" if unexpected else "") if part)
            + ". Were they made by another cell's init?"
        )
    for name, want in expected.items():
        shape, dtype = tuple(jnp.shape(got[name])), jnp.result_type(got[name])
        if shape != tuple(want.shape):
            raise ValueError(
                f"{where}: parameter {name} has shape {shape}; the cell expects "
                f"{tuple(want.shape)} for input size {input_size}. Were they made for "
                f"another hidden size, or should the inputs' last axis not be {input_size}?"
            )
        if dtype != want.dtype:
            raise ValueError(
                f"{where}: parameter {name} has dtype {dtype}; the cell expects {want.dtype}."
            )


def project_checked(cell: Cell, params: Params, xs: Array, where: str) -> Any:
    """``jax.eval_shape(cell.project, params, xs)`` after checking ``params`` with `check_params`.

    The cell's own input check speaks first: a ValueError from ``project`` (the built-in
    cells name a wrong input size) propagates as it is. Any other error of ``project``,
    such as a raw shape error in a cell of your own, gives way to `check_params`'s
    message when the parameters do not fit the cell.
    """
    try:
        projected = jax.eval_shape(cell.project, params, xs)
    except ValueError:
        raise
    except Exception as error:
        try:
            check_params(cell.init, params, jnp.shape(xs)[-1], where)
        except ValueError as clearer:
            raise clearer from error
        raise
    check_params(cell.init, params, jnp.shape(xs)[-1], where)
    return projected


def check_carry(
    initial_carry: Callable[[int], Carry], carry: Carry, batch_size: int, where: str
) -> None:
    """Raises ValueError unless ``carry`` has the structure and shapes of a batch's carry."""
    expected = jax.eval_shape(lambda: initial_carry(batch_size))
    expected_struct = jax.tree.structure(expected)
    if jax.tree.structure(carry) != expected_struct:
        raise ValueError(
            f"{where}: carry has the wrong structure: expected {expected_struct}, got "
            f"{jax.tree.structure(carry)}."
        )
    for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(carry), strict=True):
        if tuple(jnp.shape(got)) != tuple(want.shape):
            raise ValueError(
                f"{where}: carry shape mismatch: expected {tuple(want.shape)} "
                f"(batch, hidden_size) for a batch of {batch_size}; got {tuple(jnp.shape(got))}."
            )


def matmul(x: Array, w: Array, dtype: Any) -> Array:
    """``x @ w`` computed in ``dtype`` and accumulated in float32.

    ``x`` is ``(..., k)`` and ``w`` ``(k, n)``; returns float32 ``(..., n)``. On the CPU,
    tiny products (`seqnets.backend.fuse_small_matmul`) are a multiply and a sum that XLA
    fuses with the gate math, instead of a dot kernel call: the same products, summed in
    a different order.
    """
    x, w = x.astype(dtype), w.astype(dtype)
    if fuse_small_matmul(math.prod(x.shape) * w.shape[-1]):
        # Products of two bf16 (or f16) numbers are exact in float32, as in the dot.
        products = x.astype(jnp.float32)[..., :, None] * w.astype(jnp.float32)
        return jnp.sum(products, axis=-2)
    return jnp.matmul(x, w, preferred_element_type=jnp.float32)


def input_projection(name: str, dtype: Any) -> Callable[[Params, Array], Array]:
    """The ``project`` of the built-in cells: ``x @ w_x + b``, ``(..., input) -> (..., G*H)``."""

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, name)
        return matmul(x, params["w_x"], dtype) + params["b"]

    return project


def zeros_carry(hidden_size: int, count: int) -> Callable[[int], Carry]:
    """An ``initial_carry`` of ``count`` float32 zero arrays ``(batch, hidden_size)``."""

    def initial_carry(batch_size: int) -> Carry:
        if count == 1:
            return jnp.zeros((batch_size, hidden_size), jnp.float32)
        return tuple(jnp.zeros((batch_size, hidden_size), jnp.float32) for _ in range(count))

    return initial_carry
