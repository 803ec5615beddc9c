"""Layers: the blocks that models build around seqnets' cells, as pure functions.

A layer is what a cell is (`seqnets.cells.base.Cell`): a NamedTuple of pure functions
and the settings that built them, made by a factory function. Its ``init(key,
input_size)`` returns the parameters, a dict of float32 arrays, and its ``apply(params,
xs)`` maps ``xs (batch, time, features)`` to ``ys (batch, time, features)``. A layer holds
no state: parameters go in and out as pytrees, so ``jax.jit``, ``jax.grad``, sharding and
checkpoints treat them as any other. A model is a list of layers' parameters and a loop.

* `residual_block`: the pre-norm residual block of the LRU and Griffin papers, a cell's
  recurrence and a gated MLP (`seqnets.layers.residual`);
* `mlstm_block`, `slstm_block`: the xLSTM paper's blocks, each a `seqnets.cells.Cell`
  whose carry holds its convolution's inputs (`seqnets.layers.xlstm`);
* `rms_norm`, `layer_norm`: normalisation over the features.
"""

from seqnets.layers.norm import layer_norm, rms_norm
from seqnets.layers.residual import ResidualBlock, residual_block
from seqnets.layers.xlstm import mlstm_block, slstm_block

__all__ = ["ResidualBlock", "layer_norm", "mlstm_block", "residual_block", "rms_norm",
           "slstm_block"]
