"""Kernels grouped by recurrence family, and the registry that picks one.

Each family lives in ``seqnets/ops/<family>/``, after flash-linear-attention's
``fla/ops/<model>/``: a step-by-step ``naive.py`` reference written from the paper's
equations (the tests compare every kernel with it), the kernels (``sequential.py``,
``chunked.py``, ``parallel.py``) behind one signature, and an ``__init__.py`` that
registers them with `seqnets.ops.registry` and exposes the family's public op. Every
kernel returns its outputs and its final state.
"""

from seqnets.ops import registry
from seqnets.ops.mlstm import mlstm
from seqnets.ops.registry import ScanMode

__all__ = ["ScanMode", "mlstm", "registry"]
