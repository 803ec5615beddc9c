"""The residual block of the LRU and Griffin papers: a recurrence and a gated MLP.

For ``x (batch, time, width)``, with ``rms_norm`` from `seqnets.layers.norm`:

    x = x + rnn(rms_norm(x) * g_rnn)                       # the block's cell over time
    n = rms_norm(x) * g_mlp
    x = x + (gelu(n @ W_gate) * (n @ W_up)) @ W_down       # a GeGLU MLP

``rnn`` is `seqnets.scan` of the block's cell from a zero carry, in the block's ``mode``;
the cell's input and output width are both ``width``. ``gelu`` is the tanh approximation
(``jax.nn.gelu``'s default). ``W_gate`` and ``W_up`` are ``(width, mlp_factor * width)``,
``W_down`` the way back.

Initialisation: the norm gains ``g_rnn`` and ``g_mlp`` are ones; ``W_gate``, ``W_up`` and
``W_down`` are LeCun normal, and ``W_down`` is divided by ``sqrt(2 * depth)``, where
``depth`` is the number of blocks in the model, so that the variance the MLPs add to the
residual stream does not grow with the depth (as GPT-2 scales its output projections).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqnets.cells.base import Cell, flat_matmul
from seqnets.layers.norm import rms_norm
from seqnets.sequence import scan
from seqnets.types import Array, Params


class ResidualBlock(NamedTuple):
    """A residual block as pure functions; build one with `residual_block`.

    Attributes:
      init: ``(key, input_size) -> params``: ``{"norm_rnn": (width,), "rnn": cell
        params, "norm_mlp": (width,), "gate": (width, M), "up": (width, M), "down": (M,
        width)}``, ``M = mlp_factor * width``; ``input_size`` must be ``width``.
      apply: ``(params, xs) -> ys``, both ``(batch, time, width)``.
      cell: the recurrent cell, input and output width ``width``.
      width: the block's input and output features, the cell's ``hidden_size``.
      mlp_factor: the MLP's hidden width is ``mlp_factor * width``.
      depth: the number of blocks in the model (scales ``W_down``'s initialisation).
      mode: `seqnets.scan`'s evaluation order for the cell (``"auto"``, ``"sequential"``...).
      chunk_size: for ``mode="chunked"`` (None: the scan's default).
    """

    init: Callable[[Array, int], Params]
    apply: Callable[[Params, Array], Array]
    cell: Cell
    width: int
    mlp_factor: int
    depth: int
    mode: str
    chunk_size: int | None


def _positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"residual_block: {name} must be a positive int; got {value!r}.")
    return value


def residual_block(
    cell: Cell,
    *,
    mlp_factor: int = 2,
    depth: int = 1,
    mode: str = "auto",
    chunk_size: int | None = None,
) -> ResidualBlock:
    """The block ``x + rnn(norm(x))``, then ``x + mlp(norm(x))`` around ``cell``.

    Args:
      cell: any seqnets cell (``seqnets.min_gru(64)``, ``seqnets.lstm(64)``...); its
        ``hidden_size`` is the block's width.
      mlp_factor: the gated MLP's hidden width, in multiples of the width.
      depth: how many blocks the model stacks; ``W_down`` starts scaled by
        ``1 / sqrt(2 * depth)``.
      mode: how `seqnets.scan` evaluates the cell (a linear cell may run ``"chunked"``
        or ``"parallel"``; classic cells ``"auto"`` or ``"sequential"``).
      chunk_size: the chunk length for ``mode="chunked"``.

    Returns:
      A `ResidualBlock`.
    """
    if not isinstance(cell, Cell):
        raise ValueError(f"residual_block: expected a seqnets Cell (e.g. seqnets.min_gru(64)); "
                         f"got {type(cell).__name__}.")
    _positive_int(mlp_factor, "mlp_factor")
    _positive_int(depth, "depth")
    width = cell.hidden_size
    hidden = mlp_factor * width

    def init(key: Array, input_size: int) -> Params:
        if input_size != width:
            raise ValueError(
                f"residual_block: the input size must be the block's width {width} (the "
                f"cell's hidden size), since the block adds its input to its output; got "
                f"{input_size}. Project the inputs to {width} features first."
            )
        lecun = jax.nn.initializers.lecun_normal()
        k_rnn, k_gate, k_up, k_down = jax.random.split(key, 4)
        return {
            "norm_rnn": jnp.ones((width,)), "rnn": cell.init(k_rnn, width),
            "norm_mlp": jnp.ones((width,)), "gate": lecun(k_gate, (width, hidden)),
            "up": lecun(k_up, (width, hidden)),
            "down": lecun(k_down, (hidden, width)) / jnp.sqrt(2.0 * depth),
        }

    def apply(params: Params, xs: Array) -> Array:
        if jnp.ndim(xs) != 3 or jnp.shape(xs)[-1] != width:
            raise ValueError(f"residual_block.apply expects xs of shape (batch, time, {width}); "
                             f"got {jnp.shape(xs)}.")
        h = rms_norm(xs, params["norm_rnn"])
        _, y = scan(cell, params["rnn"], h, mode=mode, chunk_size=chunk_size)
        x = xs + y
        h = rms_norm(x, params["norm_mlp"])
        gated = jax.nn.gelu(flat_matmul(h, params["gate"])) * flat_matmul(h, params["up"])
        return x + flat_matmul(gated, params["down"])

    return ResidualBlock(init, apply, cell, width, mlp_factor, depth, mode, chunk_size)
