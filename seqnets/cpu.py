"""Process settings that make XLA's CPU backend faster for RNN training.

Nothing here runs on import: the experiments and benchmarks call
`restart_with_tuned_allocator` and `use_cores_as_devices` first thing in their
``__main__``.
"""

from __future__ import annotations

import os
import sys

import jax

# Far above any temporary an RNN step allocates; glibc reads these at process start.
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(16 * 2**30),
    "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30),
}


def allocator_tuned() -> bool:
    """Whether this process started with `ALLOCATOR_ENV` set."""
    return all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items())


def restart_with_tuned_allocator() -> None:
    """Re-executes the current command with glibc's allocator tuned, unless it already is.

    XLA's CPU backend allocates each train step's temporaries and frees them at the end of
    the step. glibc serves large blocks with fresh ``mmap`` calls and trims its heap on
    free, so every step pays thousands of page faults. With both thresholds raised the
    pages are reused: the row-MNIST LSTM train step runs about 1.4x faster on 2 cores
    (``benchmarks/``). glibc reads the settings only at process start (``mallopt`` caps the
    mmap threshold at 32 MB, too low), hence the restart. Set ``SEQNETS_NO_RESTART=1`` to
    skip it. Does nothing off Linux.
    """
    if not sys.platform.startswith("linux") or allocator_tuned():
        return
    if os.environ.get("SEQNETS_NO_RESTART"):
        return
    env = {**os.environ, **ALLOCATOR_ENV}
    argv = [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def usable_cores() -> int:
    """The number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def use_cores_as_devices(count: int | None = None) -> int:
    """Makes JAX's CPU backend expose ``count`` devices (default: one per usable core).

    XLA:CPU runs the small matmuls of an RNN step on one core, so a single CPU device
    leaves the other cores idle. With one device per core, a data-parallel step
    (`seqnets.parallel.make_shard_map_train_step`) puts a share of the batch on each core:
    on 2 cores the row-MNIST LSTM train step ran 1.25-1.5x faster than on one device
    (``python -m benchmarks.rnn_training``). GPUs and TPUs are unaffected.

    Must run before JAX initialises its backends (before the first array is made).

    Returns:
      The device count requested.

    Raises:
      RuntimeError: when JAX's backends are already initialised.
    """
    count = usable_cores() if count is None else count
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:
        raise RuntimeError(
            "use_cores_as_devices must run before JAX creates its first array or lists its "
            "devices; call it at the top of your program's __main__."
        ) from error
    return count
