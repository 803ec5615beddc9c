"""Choices that depend on the platform, in one place.

Two choices in seqnets depend on where the code runs, and both are made here, from
``jax.default_backend()`` at trace time:

* `resolve_hoist`: whether `seqnets.scan` computes the input projection of every step
  before its loop (one large matmul) or inside it, step by step.
* `fuse_small_matmul`: whether a cell's matmul runs as a broadcast multiply and a sum,
  which XLA fuses with the gate math around it, instead of a dot.

On GPUs and TPUs the answer is always the large matmul and the dot. On XLA:CPU each dot
is a separate kernel call with a fixed cost of a few microseconds, and a large projected
buffer costs more memory traffic than it saves; the thresholds below were set from the
measurements in ``docs/benchmarks.md`` (``python -m benchmarks.rnn_training``).
"""

from __future__ import annotations

import jax

# Largest projected buffer (time * batch * projection elements) that the CPU hoists.
CPU_HOIST_MAX_ELEMENTS = 2**16
# Largest matmul (multiply-adds) that the CPU runs as a fused multiply and sum.
SMALL_MATMUL_MACS = 2048


def on_cpu() -> bool:
    """Whether JAX's default backend is the CPU."""
    return jax.default_backend() == "cpu"


def resolve_hoist(hoist: bool | None, projected_elements: int) -> bool:
    """Resolves `seqnets.scan`'s ``hoist`` argument; ``None`` means "pick for the platform".

    Args:
      hoist: True or False are returned as they are; None picks.
      projected_elements: the size of the hoisted buffer, ``time * batch * projection``.

    Returns:
      True (project all steps before the loop) on accelerators, and on the CPU while
      ``projected_elements <= CPU_HOIST_MAX_ELEMENTS``; False otherwise.
    """
    if hoist is not None:
        return bool(hoist)
    return not on_cpu() or projected_elements <= CPU_HOIST_MAX_ELEMENTS


def fuse_small_matmul(macs: int) -> bool:
    """Whether a matmul of ``macs`` multiply-adds runs as a fused multiply and sum.

    Only on the CPU, and only up to `SMALL_MATMUL_MACS`; accelerators always use a dot.
    """
    return on_cpu() and macs <= SMALL_MATMUL_MACS
