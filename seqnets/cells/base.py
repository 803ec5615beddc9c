"""The cell contract: a recurrent cell is a NamedTuple of pure functions.

A step of every seqnets cell splits in two:

* ``project(params, x)``: the part that does not depend on the carry, an affine map of the
  input, ``(..., input_size) -> (..., projection_size)``. It works on any leading axes, so
  the sequence runner computes it for every time step at once, as one large matmul
  outside ``lax.scan``.
* ``step(params, carry, projected_t)``: the recurrent update, ``h @ W_h`` plus the
  elementwise gate math, the only work left inside the scan.

``apply`` composes the two for a single step on a raw input.

A cell whose carry update is linear in the carry,

    h_t = a_t * h_{t-1} + b_t          (elementwise; a_t, b_t from the projected x_t only)
    y_t = readout(h_t, projected_t),

says so with a `Linear` in its ``linear`` field (build it with `make_linear_cell`). The
runner may then evaluate the recurrence in another order than step by step: chunked or
with an associative scan (`seqnets.sequence.linear`). Its ``step`` is built from the same
two functions, so every order computes the same recurrence.
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


class Linear(NamedTuple):
    """A carry update that is linear in the carry: ``h_t = a_t * h_{t-1} + b_t`` (elementwise).

    Attributes:
      coefficients: ``(params, projected) -> (a, b)``; ``projected`` is
        ``(..., projection_size)``, ``b`` is ``(..., state_size)`` with the carry's dtype
        (float32, or complex64 for the LRU) and ``a`` has that shape or one that broadcasts
        to it: ``(state_size,)`` for a decay that does not depend on the input.
      readout: ``(params, h, projected) -> y``; ``h`` is ``(..., state_size)`` (the carry
        after the step), ``projected`` the same step's projected input, ``y`` is
        ``(..., hidden_size)`` float32.
    """

    coefficients: Callable[[Params, Array], tuple[Array, Array]]
    readout: Callable[[Params, Array, Array], Array]


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
      linear: a `Linear` when the carry update is linear in the carry (then the carry is
        one array ``(batch, state_size)`` and ``initial_carry`` gives zeros), else None.
    """

    init: Callable[[Array, int], Params]
    initial_carry: Callable[[int], Carry]
    project: Callable[[Params, Array], Array]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    apply: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    name: str
    linear: Linear | None = None


def make_cell(
    *,
    init: Callable[[Array, int], Params],
    initial_carry: Callable[[int], Carry],
    project: Callable[[Params, Array], Array],
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]],
    hidden_size: int,
    name: str,
    linear: Linear | None = None,
) -> Cell:
    """Builds a `Cell` whose ``apply`` is ``step`` after ``project``.

    Use it to write a cell of your own that `seqnets.scan` and `seqnets.stack` can run.
    A cell whose update is linear in the carry should use `make_linear_cell` instead,
    which builds ``step`` and ``linear`` from the same two functions.
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

    return Cell(init, initial_carry, project, step, apply, hidden_size, name, linear)


def make_linear_cell(
    *,
    init: Callable[[Array, int], Params],
    project: Callable[[Params, Array], Array],
    coefficients: Callable[[Params, Array], tuple[Array, Array]],
    readout: Callable[[Params, Array, Array], Array],
    state_size: int,
    hidden_size: int,
    name: str,
    carry_dtype: Any = jnp.float32,
) -> Cell:
    """Builds a `Cell` whose carry update is linear in the carry.

    The carry is one array ``(batch, state_size)`` of ``carry_dtype``, zeros at the start,
    and the step is, by construction::

        a, b = coefficients(params, projected_t)
        h = a * h + b
        return h, readout(params, h, projected_t)

    so `seqnets.scan` may evaluate the same recurrence in any of its modes
    (``"sequential"``, ``"chunked"``, ``"parallel"``). ``coefficients`` and ``readout``
    must act elementwise over any leading axes: the runner calls them on
    ``(time, batch, ...)`` arrays at once.

    Args:
      init: ``(key, input_size) -> params``.
      project: ``(params, x (..., input_size)) -> (..., projection_size)`` float32.
      coefficients: ``(params, projected) -> (a, b)``: ``b`` is ``(..., state_size)``,
        ``a`` the same or a shape that broadcasts to it (``(state_size,)`` for a constant
        decay, which the sequential mode then does not materialise over time).
      readout: ``(params, h (..., state_size), projected) -> (..., hidden_size)`` float32.
      state_size: width of the carry.
      hidden_size: width of the outputs.
      name: the cell's name.
      carry_dtype: the carry's dtype (``jnp.complex64`` for a complex diagonal state).

    Returns:
      A `Cell` with ``linear`` set.
    """
    if not isinstance(state_size, int) or isinstance(state_size, bool) or state_size < 1:
        raise ValueError(f"state_size must be a positive int; got {state_size!r}.")

    def initial_carry(batch_size: int) -> Array:
        return jnp.zeros((batch_size, state_size), carry_dtype)

    def step(params: Params, h: Array, projected: Array) -> tuple[Array, Array]:
        a, b = coefficients(params, projected)
        h = a * h + b
        return h, readout(params, h, projected)

    return make_cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        step=step,
        hidden_size=hidden_size,
        name=name,
        linear=Linear(coefficients, readout),
    )


def check_hidden_size(hidden_size: int) -> None:
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int; got {hidden_size!r}.")


def check_input(params: Params, x: Array, where: str, kernel: str = "w_x") -> None:
    """Raises ValueError when ``x``'s last axis does not match ``params[kernel]``'s rows."""
    expected = params[kernel].shape[0]
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
    return flat_matmul(x, w, preferred_element_type=jnp.float32)


def flat_matmul(x: Array, w: Array, **kwargs: Any) -> Array:
    """``x (..., k) @ w (k, n)`` -> ``(..., n)`` as one 2-D matmul over the flattened leading
    axes; ``kwargs`` go to `jax.numpy.matmul`.

    XLA:CPU runs a dot with several batch-like leading axes, and its gradient, as slower
    kernels with transposes.
    """
    out = jnp.matmul(x.reshape(-1, x.shape[-1]), w, **kwargs)
    return out.reshape(*x.shape[:-1], w.shape[-1])


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
