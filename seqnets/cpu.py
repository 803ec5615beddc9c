"""Opt-in process settings that make XLA's CPU backend faster for RNN training.

Nothing here runs on import, and nothing overrides a setting the user made: call
`tune_allocator` and `use_cores_as_devices` at the top of your program's ``__main__``
(the experiments and benchmarks do). Figures: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys

import jax

# glibc's mallopt parameters (malloc.h) and the environment variables that set them.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
ALLOCATOR_ENV_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                      "MALLOC_TOP_PAD_")
_INT_MAX = 2**31 - 1


def tune_allocator() -> bool:
    """Makes glibc's malloc keep and reuse freed memory, in this process, from now on.

    XLA's CPU backend allocates each train step's temporaries and frees them at the end of
    the step. By default glibc serves large blocks with fresh ``mmap`` calls and returns
    freed memory to the system, so every step pays thousands of page faults. This sets
    ``M_MMAP_MAX`` to 0 (no block is ever served by ``mmap``, whatever its size) and
    ``M_TRIM_THRESHOLD`` to its maximum (freed memory stays in the heap) through
    ``mallopt``. The cost is memory: the process keeps its peak heap.

    Returns:
      True when the settings were applied; False off glibc, or when the user set any of
      glibc's ``MALLOC_*_`` environment variables (their settings win).
    """
    if not sys.platform.startswith("linux") or any(v in os.environ for v in ALLOCATOR_ENV_VARS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _INT_MAX))


def usable_cores() -> int:
    """The number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def explicit_cpu_device_count() -> int | None:
    """The CPU device count the user chose, by ``XLA_FLAGS`` or ``jax_num_cpu_devices``, or None."""
    if jax.config.jax_num_cpu_devices not in (None, -1):
        return int(jax.config.jax_num_cpu_devices)
    found = re.findall(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else None


def use_cores_as_devices(count: int | None = None) -> int:
    """Makes JAX's CPU backend expose ``count`` devices (default: one per usable core).

    XLA:CPU runs the small matmuls of an RNN step on one core, so a single CPU device
    leaves the other cores idle. With one device per core, a data-parallel step
    (`seqnets.parallel.make_shard_map_train_step`) puts a share of the batch on each core.
    GPUs and TPUs are unaffected.

    A count the user already chose wins: with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
    or ``jax.config.update("jax_num_cpu_devices", N)`` set, this changes nothing and returns N.
    Must run before JAX initialises its backends (before the first array is made).

    Returns:
      The CPU device count in force.

    Raises:
      RuntimeError: when JAX's backends are already initialised.
    """
    explicit = explicit_cpu_device_count()
    if explicit is not None:
        return explicit
    count = usable_cores() if count is None else count
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:
        raise RuntimeError(
            "use_cores_as_devices must run before JAX creates its first array or lists its "
            "devices; call it at the top of your program's __main__."
        ) from error
    return count
