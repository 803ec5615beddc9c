"""Several hosts: JAX's multi-controller runtime, one process per host (or per GPU).

Each process runs the same program. After `initialize`, ``jax.devices()`` lists the
devices of every process and a `data_mesh` spans them all; each process feeds its own
rows of the global batch through `global_batch`; the jitted train step is unchanged.
"""

from __future__ import annotations

import jax


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: str = "gloo",
) -> None:
    """Starts JAX's distributed runtime; call it before any other JAX operation.

    Args:
      coordinator_address: ``host:port`` of process 0, reachable from every process. On
        Cloud TPU, SLURM and Open MPI clusters JAX detects it (and the two arguments
        below) by itself: pass nothing.
      num_processes: how many processes take part.
      process_id: this process's index in ``[0, num_processes)``.
      cpu_collectives: the CPU backend's cross-process collectives (``"gloo"``, or
        ``"mpi"``); GPUs and TPUs use their own (NCCL, ICI) whatever this says.
    """
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
