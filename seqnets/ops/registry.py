"""The one place that decides which kernel evaluates a recurrence.

A *family* is a kind of recurrence with one kernel signature, e.g. ``"diagonal"``
(``h_t = a_t * h_{t-1} + b_t``, `seqnets.ops.diagonal`). Each family registers its
kernels here, one per `ScanMode` (and, optionally, per platform and dtype), and one rule
that resolves ``"auto"``. `seqnets.scan` and the public ops (``seqnets.ops.*``) call
`resolve` and nothing else: a new kernel, a GPU one say, is one `register` call, not a new
branch in the runner.

    >>> from seqnets.ops import registry
    >>> mode, kernel = registry.resolve("diagonal", "chunked", dtype="float32", time=8,
    ...                                 batch=2, state=4, platform="cpu")
    >>> mode
    <ScanMode.CHUNKED: 'chunked'>
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ScanMode(enum.Enum):
    """How a recurrence is evaluated over time.

    * ``SEQUENTIAL``: one loop iteration per time step.
    * ``CHUNKED``: chunks of steps, their states passed from chunk to chunk.
    * ``PARALLEL``: all steps at once (an associative scan, or an attention-like form).
    """

    SEQUENTIAL = "sequential"
    CHUNKED = "chunked"
    PARALLEL = "parallel"


MODES = ("auto", *(m.value for m in ScanMode))


class Problem(NamedTuple):
    """What an ``"auto"`` rule may look at: the run's sizes, its dtype and its platform."""

    time: int
    batch: int
    state: int
    dtype: Any
    platform: str


class Kernel(NamedTuple):
    """One registered kernel: ``fn`` for ``family`` in ``mode``, on ``platforms`` and
    ``dtypes`` (None: any)."""

    family: str
    mode: ScanMode
    fn: Callable[..., Any]
    platforms: frozenset[str] | None
    dtypes: frozenset[str] | None


_KERNELS: dict[tuple[str, ScanMode], list[Kernel]] = {}
_AUTO: dict[str, Callable[[Problem], ScanMode | str]] = {}


def register(
    family: str,
    mode: ScanMode | str,
    fn: Callable[..., Any],
    *,
    platforms: Iterable[str] | None = None,
    dtypes: Iterable[Any] | None = None,
) -> Callable[..., Any]:
    """Registers ``fn`` as ``family``'s kernel for ``mode``; returns ``fn``.

    Args:
      family: the family's name; its kernels share one signature, which the family's
        module documents.
      mode: a `ScanMode` or its value (not ``"auto"``).
      fn: the kernel.
      platforms: the platforms it runs on (``"cpu"``, ``"gpu"``, ``"tpu"``); None for all.
      dtypes: the dtypes it accepts (e.g. ``["float32"]``); None for all.

    A later registration for the same family and mode takes precedence where its
    platforms and dtypes match; the earlier ones stay as the fallback elsewhere.
    """
    mode = _mode(mode, family, allow_auto=False)
    kernel = Kernel(
        family, mode, fn,
        None if platforms is None else frozenset(platforms),
        None if dtypes is None else frozenset(jnp.dtype(d).name for d in dtypes),
    )
    _KERNELS.setdefault((family, mode), []).append(kernel)
    return fn


def register_auto(family: str, rule: Callable[[Problem], ScanMode | str]) -> None:
    """Sets the rule that resolves ``"auto"`` for ``family``: ``rule(problem) -> mode``."""
    _AUTO[family] = rule


def families() -> tuple[str, ...]:
    """The registered families' names."""
    return tuple(sorted({family for family, _ in _KERNELS}))


def modes(family: str) -> tuple[str, ...]:
    """The modes ``family`` has a kernel for, ``"auto"`` first when it has a rule."""
    found = tuple(m.value for m in ScanMode if (family, m) in _KERNELS)
    return (("auto",) if family in _AUTO else ()) + found


def resolve(
    family: str,
    mode: ScanMode | str = "auto",
    *,
    dtype: Any,
    time: int,
    batch: int,
    state: int,
    platform: str | None = None,
    where: str = "seqnets",
) -> tuple[ScanMode, Callable[..., Any]]:
    """The mode and the kernel that evaluate ``family`` for one run.

    Args:
      family: a registered family.
      mode: ``"auto"``, a mode's name or a `ScanMode`.
      dtype: the dtype the kernel computes in.
      time: the run's number of steps, for the ``"auto"`` rule.
      batch: the run's batch size, for the ``"auto"`` rule.
      state: the number of state elements per batch row, for the ``"auto"`` rule.
      platform: ``jax.default_backend()`` when None.
      where: the caller's name, for error messages.

    Returns:
      ``(mode, kernel)``.

    Raises:
      ValueError: for an unknown family or mode, or a mode that the family has no
        kernel for on this platform and dtype; the message lists the ones it has.
    """
    if family not in families():
        raise ValueError(
            f"{where}: no kernels are registered for the recurrence family {family!r}; "
            f"the registered families are {families()}. Register one with "
            "seqnets.ops.registry.register."
        )
    platform = jax.default_backend() if platform is None else platform
    mode = _mode(mode, family, allow_auto=True, where=where)
    if mode == "auto":
        if family not in _AUTO:
            raise ValueError(f"{where}: the family {family!r} has no rule for mode='auto'; "
                             f"pass one of {modes(family)}.")
        mode = _mode(_AUTO[family](Problem(time, batch, state, dtype, platform)), family,
                     allow_auto=False, where=where)
    dtype_name = jnp.dtype(dtype).name
    for kernel in reversed(_KERNELS.get((family, mode), [])):
        if ((kernel.platforms is None or platform in kernel.platforms)
                and (kernel.dtypes is None or dtype_name in kernel.dtypes)):
            return mode, kernel.fn
    raise ValueError(
        f"{where}: the {family!r} recurrence has no {mode.value!r} kernel for {dtype_name} on "
        f"{platform}; it runs in modes {modes(family)}."
    )


def _mode(mode: ScanMode | str, family: str, *, allow_auto: bool,
          where: str = "seqnets") -> ScanMode | str:
    if isinstance(mode, ScanMode):
        return mode
    if isinstance(mode, str) and mode in MODES and (allow_auto or mode != "auto"):
        return mode if mode == "auto" else ScanMode(mode)
    allowed = MODES if allow_auto else MODES[1:]
    raise ValueError(f"{where}: mode must be one of {allowed}; got {mode!r} (family {family!r}).")
