"""The cell contract: a recurrent cell is a NamedTuple of pure functions.

A step of every seqnets cell splits in two:

* ``project(params, x)``: the part that does not depend on the carry, an affine map of the
  input, ``(..., input_size) -> (..., projection_size)``. It works on any leading axes, so
  the sequence runner computes it for every time step at once, as one large matmul
  outside ``lax.scan``.
* ``step(params, carry, projected_t)``: the recurrent update, ``h @ W_h`` plus the
  elementwise gate math, the only work left inside the scan.

``apply`` composes the two for a single step on a raw input.

A cell says how its carry update may run over a whole sequence in its ``recurrence``
field: None for the classic cells (the update is not linear in the carry; `seqnets.scan`
runs ``step`` once per time step), or a description of its recurrence family (`Linear`
for the diagonal family, ``h_t = a_t * h_{t-1} + b_t``; `Recurrence` for any other).
The runner then evaluates the whole sequence with one of the family's kernels, picked by
`seqnets.ops.registry`: sequentially, in chunks or in parallel. ``step`` computes the same
recurrence one step at a time, and ``apply`` from ``initial_carry`` is the definition
that every kernel meets.

Cells are data: every built-in constructor returns the same `Cell` for the same
configuration, so ``sn.lstm(8) == sn.lstm(8)`` and a cell is a stable static argument
of ``jax.jit`` (no recompilation for a rebuilt cell).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from seqnets.cells.config import Config, as_dtype, constructor_name, register_constructor
from seqnets.cells.dtypes import (  # noqa: F401  (flat_matmul: re-exported)
    Precision,
    check_x64,
    flat_matmul,
    matmul,
)
from seqnets.ops import diagonal
from seqnets.ops.masks import Steps
from seqnets.types import Array, Carry, Initializer, Params  # noqa: F401  (re-exported)


class Recurrence(NamedTuple):
    """A cell's recurrence as one family's kernels see it (any family but the diagonal one,
    which `Linear` describes).

    Attributes:
      family: the family's name in `seqnets.ops.registry` (e.g. ``"delta_rule"``).
      run: ``(kernel, params, projected, carry, steps, *, chunk_size, unroll) ->
        (carry, ys)``: the whole sequence with ``kernel``, the family's kernel that the
        registry picked. ``projected`` is ``cell.project`` of the time-major inputs,
        ``(time, batch, projection_size)``, padded steps zeroed; ``steps`` is a
        `seqnets.ops.masks.Steps` in processing order (``reverse`` was applied by
        flipping every row's valid steps, so the run is always forward). Returns the carry
        after each row's last valid step and ``ys (time, batch, hidden_size)``, any
        finite value at padded steps (the runner zeroes them).
    """

    family: str
    run: Callable[..., tuple[Carry, Array]]


class SegmentCarry(NamedTuple):
    """The carry of a linear cell whose first step of a segment differs from the others
    (`make_linear_cell` with ``starts_segments=True``, e.g. the RG-LRU).

    Attributes:
      start: float32 ``(batch,)``: 1 where the next step starts a segment, 0 where it
        does not. 1 in ``initial_carry`` (so a reset, which sets the carry to it, starts
        one too); 0 after any step. A float, not a bool, so that gradients, optimizers
        and tree maps over carries treat it like any other leaf (its gradient is zero).
      h: ``(batch, state_size)``, the state.
    """

    start: Array
    h: Array


class Linear(NamedTuple):
    """A carry update that is linear in the carry: ``h_t = a_t * h_{t-1} + b_t`` (elementwise).

    The diagonal family's description of a cell (`make_linear_cell` builds it).

    Attributes:
      coefficients: ``(params, projected) -> (a, b)``; ``projected`` is
        ``(..., projection_size)``, ``b`` is ``(..., state...)`` with the carry's dtype
        (the state dtype: float32 by default, complex64 for the LRU) and ``a`` has that
        shape or one that broadcasts to it: ``(state_size,)`` for a decay that does not
        depend on the input. With
        ``starts_segments``, ``(params, projected, start) -> (a, b)``, where ``start`` is
        bool ``(..., 1)``: True at a step that starts a segment.
      readout: ``(params, h, projected) -> y``; ``h`` is ``(..., state...)`` (the carry
        after the step), ``projected`` the same step's projected input, ``y`` is
        ``(..., hidden_size)`` (cast to the compute dtype by `make_linear_cell`).
      starts_segments: whether ``coefficients`` takes ``start`` and the carry is a
        `SegmentCarry`.
    """

    coefficients: Callable[..., tuple[Array, Array]]
    readout: Callable[[Params, Array, Array], Array]
    starts_segments: bool = False

    @property
    def family(self) -> str:
        """``"diagonal"``: the family of `seqnets.ops.diagonal`."""
        return diagonal.FAMILY

    def run(self, kernel: Callable[..., tuple[Array, Array]], params: Params, projected: Array,
            carry: Carry, steps: Steps, *, chunk_size: int | None = None,
            unroll: int | bool = 1, all_carries: bool = False) -> tuple[Carry, Any]:
        """The `Recurrence` ``run`` of the diagonal family: coefficients, masks folded in
        as coefficients (`seqnets.ops.diagonal.fold_masks`), the kernel, the readout.

        With ``all_carries``, the outputs are ``(ys, carries)``: the kernel's state after
        every step, ``(time, batch, ...)``, in the carry's structure."""
        h0 = carry.h if self.starts_segments else carry
        if self.starts_segments:
            # A step starts a segment after a reset, and at the first step when the
            # incoming carry says so.
            first = jnp.zeros(projected.shape[:2], bool).at[0].set(carry.start > 0)
            start = first if steps.reset is None else first | steps.reset
            a, b = self.coefficients(params, projected, start[..., None])
        else:
            a, b = self.coefficients(params, projected)
        a, b = diagonal.fold_masks(a, b, steps.valid, steps.reset)
        if projected.shape[0] == 0:
            hs, h_last = b.astype(h0.dtype), h0
        else:
            hs, h_last = kernel(a, b, h0, chunk_size=chunk_size, unroll=unroll)
        ys = self.readout(params, hs, projected)
        if self.starts_segments:
            # Still at a segment's start only where no valid step ran.
            ran = True if steps.valid is None else jnp.any(steps.valid, axis=0)
            h_last = SegmentCarry(jnp.where(ran, 0.0, carry.start), h_last)
            hs = SegmentCarry(jnp.zeros(hs.shape[:2], carry.start.dtype), hs)
        return h_last, ((ys, hs) if all_carries else ys)


class Cell(NamedTuple):
    """A recurrent cell as pure functions; build one with `seqnets.lstm`, `gru`, `min_gru`...

    Attributes:
      init: ``(key, input_size) -> params``, a dict of arrays of the cell's
        ``param_dtype`` (float32 by default).
      initial_carry: ``(batch_size) -> carry``, each leaf ``(batch, ...)``: ``(batch,
        hidden_size)`` for the classic cells, ``(batch, hidden, state)`` for S6, any rank
        for a cell of your own.
      project: ``(params, x) -> projected``; ``x`` is ``(..., input_size)``, the result
        ``(..., projection_size)``, in the state dtype (float32 by default; see
        `seqnets.cells.dtypes`).
      step: ``(params, carry, projected_t) -> (carry, h)``; ``projected_t`` is
        ``(batch, projection_size)``, ``h`` is ``(batch, hidden_size)``.
      apply: ``(params, carry, x_t) -> (carry, h)``; one step on a raw input
        ``x_t: (batch, input_size)``, the same as ``step(params, carry, project(params, x_t))``.
      hidden_size: the width of the outputs ``h`` (for an LSTM with a projection, the
        projection's width).
      name: ``"lstm"``, ``"gru"``, ``"elman"`` or a name of your own.
      recurrence: how the whole sequence may run with a family's kernels: a `Linear`
        (the diagonal family) or a `Recurrence`; None when the update is not linear in
        the carry (the step runs once per time step, the ``"nonlinear"`` family).
      precision: the cell's dtypes (`Precision`), or None for a cell of your own that
        manages its dtypes itself.
      config: how the cell was built (`Config`): its constructor and arguments, set by
        `cell_constructor`; None for a cell made directly with `make_cell`.
    """

    init: Callable[[Array, int], Params]
    initial_carry: Callable[[int], Carry]
    project: Callable[[Params, Array], Array]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    apply: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    name: str
    recurrence: Linear | Recurrence | None = None
    precision: Precision | None = None
    config: Config | None = None

    @property
    def family(self) -> str:
        """The recurrence family's name in `seqnets.ops.registry`: ``"nonlinear"`` for a
        cell without a ``recurrence``."""
        return "nonlinear" if self.recurrence is None else self.recurrence.family

    @property
    def linear(self) -> Linear | None:
        """Deprecated alias of ``recurrence`` for the diagonal family (None otherwise)."""
        warnings.warn("Cell.linear is deprecated: use Cell.recurrence (and Cell.family).",
                      DeprecationWarning, stacklevel=2)
        return self.recurrence if isinstance(self.recurrence, Linear) else None


CellT = TypeVar("CellT")


def cell_constructor(build: Callable[..., CellT]) -> Callable[..., CellT]:
    """Makes ``build`` return the same object for the same configuration, and record it.

    A cell holds closures, which compare by identity, so two cells built alike would be
    unequal and ``jax.jit(..., static_argnames="cell")`` would compile once for each. The
    built-in constructors are wrapped in this: their arguments, defaults filled in, key a
    cache of the cells built so far (a dtype counts by name: ``jnp.float32``,
    ``np.float32`` and ``np.dtype("float32")`` are one configuration). Arguments that
    cannot be hashed skip the cache.

    The model returned carries a `Config` (its ``config`` field): the constructor's name,
    registered for `seqnets.from_config`, and the arguments, so it can be rebuilt with
    other dtypes (`seqnets.stack`) or saved beside a checkpoint. A constructor of your own
    wrapped in this gets the same, provided its result is a NamedTuple with a ``config``
    field (a `Cell` or a `Stack`).
    """
    signature = inspect.signature(build)
    built: dict[Any, CellT] = {}
    name = constructor_name(build)

    def freeze(value: Any) -> Any:
        # bool is an int to Python (True == 1): keep the type, so lstm(True) still fails.
        if isinstance(value, list | tuple):
            # A list and a tuple of the same cells are one configuration (a config read
            # back from JSON gives tuples); a NamedTuple keeps its type.
            kind = "sequence" if type(value) in (list, tuple) else type(value).__name__
            return (kind, *map(freeze, value))
        if isinstance(value, bool):
            return (type(value).__name__, value)
        dtype = as_dtype(value)
        return ("dtype", dtype.name) if dtype is not None else value

    def hashable(value: Any) -> Any:
        # Plain lists and tuples only: a Cell is a NamedTuple, and stays one.
        return tuple(map(hashable, value)) if type(value) in (list, tuple) else value

    @functools.wraps(build)
    def cached(*args: Any, **kwargs: Any) -> CellT:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple((arg, freeze(value)) for arg, value in bound.arguments.items())
        try:
            return built[key]
        except TypeError:  # an unhashable argument: no cache, no config
            return build(*args, **kwargs)
        except KeyError:
            cell = build(*args, **kwargs)
            if hasattr(cell, "_replace") and "config" in getattr(cell, "_fields", ()):
                arguments = tuple((arg, hashable(value)) for arg, value in bound.arguments.items())
                cell = cell._replace(config=Config(name, arguments))
            built[key] = cell
            return cell

    register_constructor(name, cached)
    return cached


def make_cell(
    *,
    init: Callable[[Array, int], Params],
    initial_carry: Callable[[int], Carry],
    project: Callable[[Params, Array], Array],
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]],
    hidden_size: int,
    name: str,
    recurrence: Linear | Recurrence | None = None,
    linear: Linear | None = None,
    precision: Precision | None = None,
) -> Cell:
    """Builds a `Cell` whose ``apply`` is ``step`` after ``project``.

    Use it to write a cell of your own that `seqnets.scan` and `seqnets.stack` can run.
    A cell whose update is linear in the carry should use `make_linear_cell` instead,
    which builds ``step`` and ``recurrence`` from the same two functions. ``linear`` is a
    deprecated alias of ``recurrence``.

    ``precision`` (`seqnets.cells.precision(dtype, param_dtype)`) gives the cell the
    built-in cells' dtypes: ``init``'s floating-point parameters are cast to
    ``param_dtype``, ``project``'s result to the state dtype and ``step``'s output to the
    compute dtype; ``initial_carry`` should make zeros of ``precision.state_dtype`` and the
    matmuls should go through `seqnets.cells.matmul` in ``precision.dtype``.

    ``step`` is checked where it is traced: it must return a pair ``(carry, output)``,
    and a raw input passed where the projected one belongs (``cell.step(params, carry,
    x_t)``) is named as such.
    """
    if linear is not None:
        warnings.warn("make_cell(linear=...) is deprecated: use recurrence=...",
                      DeprecationWarning, stacklevel=2)
        recurrence = linear if recurrence is None else recurrence
    hidden_size = check_positive_int(hidden_size, "hidden_size", f"make_cell({name!r})")
    if precision is not None:
        init = precision.init(init)
        project = _cast_result(project, precision.state_dtype)
        step = _cast_output(step, precision.dtype)
    step = _checked_step(step, init, name)

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

    return Cell(init, initial_carry, project, step, apply, hidden_size, name, recurrence,
                precision)


def _cast_result(function: Callable[..., Array], dtype: Any) -> Callable[..., Array]:
    @functools.wraps(function)
    def cast(*args: Any) -> Array:
        return function(*args).astype(dtype)

    return cast


def _cast_output(step: Callable[..., tuple[Carry, Array]], dtype: Any):
    @functools.wraps(step)
    def cast(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        out = step(params, carry, projected)
        if isinstance(out, tuple | list) and len(out) == 2:
            return out[0], jnp.asarray(out[1]).astype(dtype)
        return out  # _checked_step names the problem

    return cast


def _checked_step(step: Callable[..., tuple[Carry, Array]], init: Callable[[Array, int], Params],
                  name: str):
    """``step`` with trace-time checks of what it is given and what it returns (no run-time cost)."""

    @functools.wraps(step)
    def checked(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        try:
            out = step(params, carry, projected)
        except (TypeError, ValueError) as error:
            if _fits_as_input(init, params, projected):
                raise ValueError(
                    f"{name}.step takes the projected input, cell.project(params, x_t); it was "
                    f"given an array of width {jnp.shape(projected)[-1]}, which is the "
                    "parameters' input size. For a raw input use "
                    f"{name}.apply(params, carry, x_t) (project, then step)."
                ) from error
            raise
        if not (isinstance(out, tuple | list) and len(out) == 2):
            got = (f"a {jnp.result_type(out)}{list(jnp.shape(out))} array"
                   if hasattr(out, "shape") else f"{type(out).__name__}")
            raise ValueError(
                f"the step of the {name!r} cell must return a pair (carry, output); it returned "
                f"{got}. When the output is the carry itself, return (h, h)."
            )
        return tuple(out)

    return checked


def _fits_as_input(init: Callable[[Array, int], Params], params: Params, x: Any) -> bool:
    """Whether ``x``'s last axis is the input size ``params`` were made for."""
    if jnp.ndim(x) < 1:
        return False
    try:
        check_params(init, params, jnp.shape(x)[-1], where="")
    except Exception:
        return False
    return True


def make_linear_cell(
    *,
    init: Callable[[Array, int], Params],
    project: Callable[[Params, Array], Array],
    coefficients: Callable[..., tuple[Array, Array]],
    readout: Callable[[Params, Array, Array], Array],
    state_size: int | tuple[int, ...],
    hidden_size: int,
    name: str,
    carry_dtype: Any = None,
    starts_segments: bool = False,
    precision: Precision | None = None,
) -> Cell:
    """Builds a `Cell` whose carry update is linear in the carry (the diagonal family).

    The carry is one array ``(batch, *state_size)`` of ``carry_dtype``, zeros at the
    start, and the step is, by construction::

        a, b = coefficients(params, projected_t)
        h = a * h + b
        return h, readout(params, h, projected_t)

    so `seqnets.scan` may evaluate the same recurrence in any of its modes
    (``"sequential"``, ``"chunked"``, ``"parallel"``). ``coefficients`` and ``readout``
    must act elementwise over any leading axes: the runner calls them on
    ``(time, batch, ...)`` arrays at once.

    Args:
      init: ``(key, input_size) -> params``.
      project: ``(params, x (..., input_size)) -> (..., projection_size)``, in the state
        dtype (float32 by default).
      coefficients: ``(params, projected) -> (a, b)``: ``b`` is ``(..., *state_size)``,
        ``a`` the same or a shape that broadcasts to it (``(state_size,)`` for a constant
        decay, which the sequential mode then does not materialise over time). With
        ``starts_segments``: ``(params, projected, start) -> (a, b)``.
      readout: ``(params, h (..., *state_size), projected) -> (..., hidden_size)``.
      state_size: the carry's shape after the batch axis: an int ``S`` (a ``(batch, S)``
        carry) or a tuple, e.g. ``(hidden, state)`` for S6.
      hidden_size: width of the outputs.
      name: the cell's name.
      carry_dtype: the carry's dtype (e.g. complex for a complex diagonal state); when
        None, ``precision.state_dtype``, or float32 without a ``precision``.
      starts_segments: True when a segment's first step differs from the others (the
        RG-LRU, after recurrentgemma, has no decay and no input normaliser there). The
        carry is then a `SegmentCarry` ``(start, h)`` whose ``start`` is True in
        ``initial_carry``, and ``coefficients`` gets ``start``, bool ``(..., 1)``: True at
        a step that starts a segment (the first step from ``initial_carry``, a reset).
      precision: the cell's dtypes, as for `make_cell`; the readout's result is cast to
        the compute dtype.

    Returns:
      A `Cell` whose ``recurrence`` is a `Linear`.
    """
    shape = (state_size,) if isinstance(state_size, int) else tuple(state_size)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                            for s in shape):
        raise ValueError(f"state_size must be a positive int or a tuple of them; got "
                         f"{state_size!r}.")
    if carry_dtype is None:
        carry_dtype = jnp.float32 if precision is None else precision.state_dtype
    if precision is not None:
        readout = _cast_result(readout, precision.dtype)

    def initial_carry(batch_size: int) -> Carry:
        check_x64(carry_dtype, "initial_carry")
        h = jnp.zeros((batch_size, *shape), carry_dtype)
        return SegmentCarry(jnp.ones((batch_size,), jnp.float32), h) if starts_segments else h

    def step(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        if starts_segments:
            a, b = coefficients(params, projected, carry.start[:, None] > 0)
            h = a * carry.h + b
            return SegmentCarry(jnp.zeros_like(carry.start), h), readout(params, h, projected)
        a, b = coefficients(params, projected)
        h = a * carry + b
        return h, readout(params, h, projected)

    return make_cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        step=step,
        hidden_size=hidden_size,
        name=name,
        recurrence=Linear(coefficients, readout, starts_segments),
        precision=precision,
    )


def check_positive_int(value: Any, name: str, where: str = "seqnets") -> int:
    """``value`` as a Python int; ValueError unless it is a positive integer.

    NumPy integers (``np.int64(8)``, what a config file or an array often gives) count;
    bools, floats and strings do not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int; got {value!r}.")
    return int(value)


def check_hidden_size(hidden_size: int) -> int:
    """``hidden_size`` as a Python int; ValueError unless it is a positive integer."""
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, numbers.Integral) \
            or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int; got {hidden_size!r}.")
    return int(hidden_size)


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
                f"{where}: parameter {name} has dtype {dtype}; the cell expects {want.dtype}. "
                f"Build the cell with param_dtype={dtype} to keep {dtype} parameters, or cast "
                f"them: jax.tree.map(lambda p: p.astype({want.dtype}), params)."
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
        raise ValueError(f"{where}: {_carry_mismatch(expected, carry)}")
    for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(carry), strict=True):
        if tuple(jnp.shape(got)) != tuple(want.shape):
            raise ValueError(
                f"{where}: carry shape mismatch: expected {tuple(want.shape)} "
                f"(batch, ...) for a batch of {batch_size}; got {tuple(jnp.shape(got))}."
            )
        if (jnp.issubdtype(jnp.result_type(got), jnp.complexfloating)
                and not jnp.issubdtype(want.dtype, jnp.complexfloating)):
            raise ValueError(
                f"{where}: the carry holds a {jnp.result_type(got)} array where the cell's "
                f"carry is {want.dtype}: its imaginary part would be lost. Pass a real "
                "carry (e.g. this cell's initial_carry, or the carry it returned)."
            )


def input_projection(name: str, precision: Precision | Any = jnp.float32
                     ) -> Callable[[Params, Array], Array]:
    """The ``project`` of the built-in cells: ``x @ w_x (+ b)``, ``(..., input) -> (..., G*H)``.

    ``precision`` is the cell's `Precision` (or a compute dtype); the bias is added when the
    parameters have one (``use_bias=False`` cells have none).
    """
    dtype = precision.dtype if isinstance(precision, Precision) else precision

    def project(params: Params, x: Array) -> Array:
        check_input(params, x, name)
        y = matmul(x, params["w_x"], dtype)
        return y + params["b"] if "b" in params else y

    return project


def zeros_carry(hidden_size: int, count: int, dtype: Any = jnp.float32,
                sizes: tuple[int, ...] | None = None) -> Callable[[int], Carry]:
    """An ``initial_carry`` of ``count`` zero arrays ``(batch, hidden_size)`` of ``dtype``
    (one array when ``count`` is 1); ``sizes`` gives each array its own width instead."""
    widths = (hidden_size,) * count if sizes is None else tuple(sizes)

    def initial_carry(batch_size: int) -> Carry:
        check_x64(dtype, "initial_carry")
        zeros = tuple(jnp.zeros((batch_size, w), dtype) for w in widths)
        return zeros[0] if len(zeros) == 1 else zeros

    return initial_carry


def describe_tree(tree: Any) -> str:
    """A short description of a pytree's structure, for messages: ``tuple of 2 arrays``."""
    if isinstance(tree, list | tuple) and not hasattr(tree, "_fields"):
        kinds = {type(v).__name__ for v in tree}
        inner = "arrays" if all(hasattr(v, "shape") for v in tree) else "/".join(sorted(kinds))
        return f"a {type(tree).__name__} of {len(tree)} {inner}"
    if isinstance(tree, dict):
        return f"a dict with keys {sorted(map(str, tree))}"
    if hasattr(tree, "shape"):
        return f"one array of shape {tuple(jnp.shape(tree))}"
    return f"a {type(tree).__name__}"


def _carry_mismatch(expected: Any, carry: Any) -> str:
    """Why ``carry`` does not have ``expected``'s structure, and the fix when it is clear."""
    message = (f"the carry has the wrong structure: it is {describe_tree(carry)}; this cell's carry is "
               f"{describe_tree(expected)} ({jax.tree.structure(expected)}).")
    same_leaves = len(jax.tree.leaves(carry)) == len(jax.tree.leaves(expected))
    if isinstance(carry, list) and isinstance(expected, tuple) and same_leaves:
        return message + (" Pass it as a tuple, tuple(carry): JAX tells a list from a tuple, "
                          "and the carry a step returns is a tuple.")
    if isinstance(carry, list) and carry and all(isinstance(v, dict) for v in carry):
        return message + (" That is a stack's carry (one dict per layer): pass it to "
                          "stack.apply, or pass this cell its own carry, e.g. "
                          "cell.initial_carry(batch).")
    return message + " Pass cell.initial_carry(batch) or the carry this cell returned."
