"""Running cells over sequences: `scan` for one layer, `stack` for layers and directions.

The runner's module is `seqnets.sequence.runner`; ``seqnets.sequence.scan`` is the
function. ``seqnets.sequence.scan`` as a module (``from seqnets.sequence.scan import
scan``, the layout of seqnets 0.1.0) still imports, with a `DeprecationWarning` at each use
of a name from it, until seqnets 0.2.0.
"""

import sys
import types
import warnings
from typing import Any

from seqnets.sequence import runner
from seqnets.sequence.runner import scan
from seqnets.sequence.stack import Stack, final_outputs, stack

__all__ = ["Stack", "final_outputs", "runner", "scan", "stack"]


class _DeprecatedRunnerAlias(types.ModuleType):
    """``seqnets.sequence.scan`` the module: `seqnets.sequence.runner` under its old name."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        warnings.warn(
            "the module seqnets.sequence.scan is deprecated and will be removed in seqnets "
            f"0.2.0 (its name is the function's, which hides it): use seqnets.sequence.runner."
            f"{name}, or seqnets.scan for the function.",
            DeprecationWarning, stacklevel=2)
        return getattr(runner, name)


sys.modules.setdefault(f"{__name__}.scan", _DeprecatedRunnerAlias(f"{__name__}.scan"))
