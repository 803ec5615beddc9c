"""Conversions to and from Flax and PyTorch parameters, and a Flax linen wrapper.

One naming scheme, after seqnets' cells: ``from_<framework>_<cell>`` reads the framework's
parameters into seqnets' layout and ``to_<framework>_<cell>`` writes them back, for
framework ``flax`` or ``torch`` and cell ``lstm``, ``gru`` or ``elman``. Each takes one
cell's parameters and returns one cell's parameters; the torch converters also take and
return the `stack` form (a list per layer) for ``nn.LSTM``/``nn.GRU``/``nn.RNN``, whose
``state_dict`` keys (``weight_ih_l0``, ...) say so. None of them imports Flax or torch.

`RNN`, a Flax linen module that runs a seqnets cell or stack, needs Flax
(``pip install 'seqnets[flax]'``) and is imported on first use.

Deprecated aliases, removed in the next release: ``from_flax_simple``/``to_flax_simple``
(now ``*_flax_elman``) and ``from_torch_rnn``/``to_torch_rnn`` (now ``*_torch_elman``).
"""

from typing import Any

from seqnets.interop.flax import (
    from_flax_elman,
    from_flax_gru,
    from_flax_lstm,
    from_flax_simple,
    to_flax_elman,
    to_flax_gru,
    to_flax_lstm,
    to_flax_simple,
)
from seqnets.interop.torch import (
    from_torch_elman,
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_torch_elman,
    to_torch_gru,
    to_torch_lstm,
    to_torch_rnn,
)

__all__ = [
    "RNN",
    "from_flax_elman",
    "from_flax_gru",
    "from_flax_lstm",
    "from_flax_simple",
    "from_torch_elman",
    "from_torch_gru",
    "from_torch_lstm",
    "from_torch_rnn",
    "to_flax_elman",
    "to_flax_gru",
    "to_flax_lstm",
    "to_flax_simple",
    "to_torch_elman",
    "to_torch_gru",
    "to_torch_lstm",
    "to_torch_rnn",
]


def __getattr__(name: str) -> Any:
    # RNN needs Flax; importing it on first use keeps `import seqnets.interop` free of Flax.
    if name == "RNN":
        from seqnets.interop.linen import RNN

        return RNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
