"""The dtypes of a cell (`Precision`), and the matmul every cell computes with.

Every built-in cell takes two dtypes, as Flax's layers do:

* ``param_dtype``, the dtype of the parameters ``init`` returns (float32 by default);
* ``dtype``, the compute dtype (``param_dtype`` when None): the operands of the cell's
  matmuls, the gate nonlinearities of the classic cells (LSTM, GRU, Elman) and the
  outputs ``ys``.

A third follows from them, the *state dtype*, ``promote(float32, dtype, param_dtype)``:
the carry, the matmuls' accumulation, normalisation statistics and the diagonal family's
coefficients. A recurrence adds into its carry at every step, so the carry is never
narrower than float32; and a decay close to 1, such as 0.999, is 1.0 in bfloat16 (whose
spacing below 1 is 2^-8), so the diagonal cells' ``a_t`` stays in the state dtype too.
With bfloat16 compute, what the backward pass keeps of an LSTM stack (the gate values,
the layers' outputs) is then mostly bfloat16: about 40 % fewer bytes than in float32
(``benchmarks/precision_memory.py``).

| cell built with | parameters | matmul operands | carry | outputs |
|---|---|---|---|---|
| defaults | float32 | float32 | float32 | float32 |
| ``dtype=jnp.bfloat16`` | float32 | bfloat16 | float32 | bfloat16 |
| ``param_dtype=jnp.bfloat16`` | bfloat16 | bfloat16 | float32 | bfloat16 |
| ``param_dtype=jnp.bfloat16, dtype=jnp.float32`` | bfloat16 | float32 | float32 | float32 |
| ``param_dtype=jnp.float64`` (64-bit mode) | float64 | float64 | float64 | float64 |

A cell of your own adopts this with `precision` (validates the two arguments) and
``make_cell(..., precision=p)`` (casts ``init``'s parameters to ``param_dtype``, the
projection to the state dtype, the outputs to ``dtype``); its matmuls call `matmul` (or
``p.matmul``), its gate math runs on ``p.cast_compute(pre_activations)``, the carry it
returns is ``p.cast_state(...)``, and its ``initial_carry`` makes zeros of
``p.state_dtype``. 64-bit dtypes need JAX's 64-bit mode (``jax.enable_x64``); without it
they are refused with that advice instead of being silently truncated to 32 bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqnets.backend import fuse_small_matmul, on_cpu
from seqnets.types import Array, Params


class Precision(NamedTuple):
    """A cell's dtypes; build one with `precision`.

    Attributes:
      dtype: the compute dtype: matmul operands and outputs.
      param_dtype: the parameters' dtype.
    """

    dtype: np.dtype
    param_dtype: np.dtype

    @property
    def state_dtype(self) -> np.dtype:
        """The carry's and the gate math's dtype: ``promote(float32, dtype, param_dtype)``."""
        return np.dtype(jnp.promote_types(jnp.promote_types(jnp.float32, self.dtype),
                                          self.param_dtype))

    def cast_compute(self, x: Array) -> Array:
        """``x`` in the compute dtype (e.g. pre-activations before the gate math)."""
        return x.astype(self.dtype)

    def cast_state(self, x: Array) -> Array:
        """``x`` in the state dtype (e.g. a carry computed from compute-dtype gates)."""
        return x.astype(self.state_dtype)

    def matmul(self, x: Array, w: Array) -> Array:
        """`matmul` in this precision: ``x (..., k) @ w (k, n)``, operands in ``dtype``."""
        return matmul(x, w, self.dtype)

    def zeros(self, shape: tuple[int, ...], *, complex_: bool = False) -> Array:
        """Zeros of the state dtype (its complex counterpart with ``complex_``), e.g. a carry."""
        check_x64(self.state_dtype, "initial_carry")
        dtype = jnp.promote_types(self.state_dtype, jnp.complex64) if complex_ else self.state_dtype
        return jnp.zeros(shape, dtype)

    def init(self, init: Callable[[Array, int], Params]) -> Callable[[Array, int], Params]:
        """``init`` whose floating-point leaves are cast to ``param_dtype``.

        The parameters are drawn in float32 (or whatever ``init`` uses) and cast once, so
        a cell's initial values do not depend on its ``param_dtype`` beyond the rounding.
        """
        param_dtype = self.param_dtype

        def cast_init(key: Array, input_size: int) -> Params:
            check_x64(param_dtype, "init")
            params = init(key, input_size)
            return jax.tree.map(
                lambda p: p.astype(param_dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p,
                params)

        return cast_init

    def output(self, y: Array) -> Array:
        """``y`` in the compute dtype, as the cell returns it."""
        return y.astype(self.dtype)


def precision(dtype: Any = None, param_dtype: Any = jnp.float32, *,
              where: str = "seqnets") -> Precision:
    """A `Precision` from a cell constructor's ``dtype`` and ``param_dtype`` arguments.

    Args:
      dtype: the compute dtype (matmul operands, outputs); ``param_dtype`` when None.
      param_dtype: the parameters' dtype.
      where: the constructor's name, for messages.

    Raises:
      ValueError: when either is not a floating-point dtype (``jnp.float32``,
        ``jnp.bfloat16``, ``jnp.float16``, ``jnp.float64``).
    """
    param = _floating(param_dtype, "param_dtype", where)
    return Precision(param if dtype is None else _floating(dtype, "dtype", where), param)


def _floating(value: Any, name: str, where: str) -> np.dtype:
    try:
        dtype = np.dtype(jnp.dtype(value))
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating) or isinstance(value, bool):
        raise ValueError(f"{where}: {name} must be a floating-point dtype such as jnp.float32 "
                         f"or jnp.bfloat16; got {value!r}.")
    return dtype


def check_x64(dtype: Any, where: str) -> None:
    """ValueError when ``dtype`` is 64-bit and JAX's 64-bit mode is off.

    Without it JAX would make float32 arrays instead, silently.
    """
    dtype = np.dtype(dtype)
    wide = jnp.issubdtype(dtype, jnp.inexact) and jnp.finfo(dtype).bits >= 64
    if wide and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{where}: {dtype.name} needs JAX's 64-bit mode, which is off: run "
            "jax.config.update('jax_enable_x64', True) at startup, or use "
            "`with jax.enable_x64(True):` around the code; without it JAX makes float32 "
            "arrays instead."
        )


def accumulation_dtype(dtype: Any) -> np.dtype:
    """The dtype a matmul in ``dtype`` accumulates in: float32, or float64 for float64."""
    return np.dtype(jnp.promote_types(jnp.float32, dtype))


def matmul(x: Array, w: Array, dtype: Any = jnp.float32) -> Array:
    """``x @ w`` with both operands in ``dtype``, accumulated in at least float32.

    The public matmul of seqnets' cells, for cells of your own too.

    Args:
      x: ``(..., k)``, any leading axes.
      w: ``(k, n)``.
      dtype: the operands' dtype (``jnp.bfloat16`` rounds them to bfloat16).

    Returns:
      ``(..., n)`` in `accumulation_dtype` (float32; float64 for float64 operands). On the
      CPU, tiny products (`seqnets.backend.fuse_small_matmul`) are a multiply and a sum
      that XLA fuses with the gate math, instead of a dot kernel call: the same products,
      summed in a different order.
    """
    acc = accumulation_dtype(dtype)
    x, w = x.astype(dtype), w.astype(dtype)
    if fuse_small_matmul(math.prod(x.shape) * w.shape[-1]):
        # Products of two bf16 (or f16) numbers are exact in float32, as in the dot.
        products = x.astype(acc)[..., :, None] * w.astype(acc)
        return jnp.sum(products, axis=-2)
    return flat_matmul(x, w, preferred_element_type=acc)


def einsum(spec: str, x: Array, w: Array, dtype: Any) -> Array:
    """``jnp.einsum(spec, x, w)`` with both operands in ``dtype``, summed in
    `accumulation_dtype` (float32 for bfloat16): the batched products of block-diagonal
    weights (sLSTM's heads, the xLSTM blocks' headwise projections).

    Returns the einsum's result in `accumulation_dtype`.

    On the CPU, operands narrower than float32 are rounded to ``dtype`` and then widened:
    XLA:CPU (jaxlib 0.10 to 0.12 at least) refuses some batched bfloat16 dots with a float32
    result at run time ("Unsupported element type for DotThunk::Execute: BF16 x BF16 =
    F32"), and a product of two bfloat16 numbers is exact in float32, so the sums are
    those of the bfloat16 dot.
    """
    acc = accumulation_dtype(dtype)
    x, w = x.astype(dtype), w.astype(dtype)
    if on_cpu() and np.dtype(dtype).itemsize < np.dtype(acc).itemsize:
        return jnp.einsum(spec, x.astype(acc), w.astype(acc))
    return jnp.einsum(spec, x, w, preferred_element_type=acc)


def flat_matmul(x: Array, w: Array, **kwargs: Any) -> Array:
    """``x (..., k) @ w (k, n)`` -> ``(..., n)`` as one 2-D matmul over the flattened leading
    axes; ``kwargs`` go to `jax.numpy.matmul`.

    XLA:CPU runs a dot with several batch-like leading axes, and its gradient, as slower
    kernels with transposes.
    """
    out = jnp.matmul(x.reshape(-1, x.shape[-1]), w, **kwargs)
    return out.reshape(*x.shape[:-1], w.shape[-1])
