"""Kernels grouped by recurrence family, and the registry that picks one.

Each family lives in ``seqnets/ops/<family>/`` (or one module when it is small), after
flash-linear-attention's ``fla/ops/<model>/``: a step-by-step ``naive.py`` reference
written from the paper's equations (the tests compare every kernel with it), the kernels
(``sequential.py``, ``chunked.py``, ``parallel.py``) behind one signature, and an
``__init__.py`` that registers them with `seqnets.ops.registry` and exposes the family's
public op. Every kernel returns its outputs and its final state.

Families: ``nonlinear`` (`seqnets.ops.nonlinear`: the classic cells, step by step),
``diagonal`` (`seqnets.ops.diagonal`: ``h_t = a_t * h_{t-1} + b_t``), ``delta_rule``
(`seqnets.ops.delta_rule`: DeltaNet and Gated DeltaNet), ``gla``
(`seqnets.ops.gla`: gated linear attention, Mamba-2's SSD) and ``mlstm``
(``seqnets.ops.mlstm``: xLSTM's matrix memory; the name is the public op, the package is
``seqnets/ops/mlstm/``). The mask contract that every family shares is `seqnets.ops.masks`.
"""

from seqnets.ops import diagonal, masks, nonlinear, registry
from seqnets.ops.delta_rule import gated_delta_rule
from seqnets.ops.diagonal import linear_recurrence
from seqnets.ops.gla import gated_linear_attention
from seqnets.ops.mlstm import mlstm
from seqnets.ops.registry import ScanMode

__all__ = ["ScanMode", "diagonal", "gated_delta_rule", "gated_linear_attention",
           "linear_recurrence", "masks", "mlstm", "nonlinear", "registry"]
