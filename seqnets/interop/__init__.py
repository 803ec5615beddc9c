"""Conversions to and from Flax and PyTorch parameters, and a Flax linen wrapper.

One entry point per direction and framework, each naming the seqnets model the
parameters are for (a `Cell`, or its name such as ``"lstm"``; for PyTorch also a
`Stack`):

* `from_flax(flax_params, cell)` and `to_flax(params, cell)`: one Flax linen cell's
  parameters (``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``);
* `from_nnx(nnx_params, cell)` and `to_nnx(params, cell)`: one Flax NNX cell's
  (``nnx.LSTMCell``, ``nnx.OptimizedLSTMCell``, ``nnx.GRUCell``, ``nnx.SimpleCell``);
* `from_torch(state_dict, model)` and `to_torch(params, model)`: a PyTorch cell's or
  layers module's ``state_dict`` (``nn.LSTMCell`` / ``nn.LSTM``, ``GRU``, ``RNN``).

They look the cell's converter up in a registry keyed by framework and cell name
(`seqnets.interop.registry`); `register` adds one. None of them imports Flax or torch.
Modules that run seqnets models inside Flax NNX and Equinox are `seqnets.nnx.RNN` and
`seqnets.equinox.RNN`.

`RNN`, a Flax linen module that runs a seqnets cell or stack, needs Flax
(``pip install 'seqnets[flax]'``) and is imported on first use.

Deprecated aliases, removed in seqnets 0.2.0: the per-cell names of 0.1.0,
``from_<framework>_<cell>`` and ``to_<framework>_<cell>`` for ``flax``/``torch`` and
``lstm``/``gru``/``elman``, and the older ``from_flax_simple``/``to_flax_simple`` and
``from_torch_rnn``/``to_torch_rnn``. Each call warns and names its replacement, e.g.
``from_torch(params, 'lstm')``.
"""

from typing import Any

from seqnets.interop.flax import (
    from_flax,
    from_flax_elman,
    from_flax_gru,
    from_flax_lstm,
    from_flax_simple,
    to_flax,
    to_flax_elman,
    to_flax_gru,
    to_flax_lstm,
    to_flax_simple,
)
from seqnets.interop.nnx import from_nnx, to_nnx
from seqnets.interop.registry import Converter, register, registered
from seqnets.interop.torch import (
    from_torch,
    from_torch_elman,
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_torch,
    to_torch_elman,
    to_torch_gru,
    to_torch_lstm,
    to_torch_rnn,
)

__all__ = [
    "RNN",
    "Converter",
    "from_flax",
    "from_flax_elman",
    "from_flax_gru",
    "from_flax_lstm",
    "from_flax_simple",
    "from_nnx",
    "from_torch",
    "from_torch_elman",
    "from_torch_gru",
    "from_torch_lstm",
    "from_torch_rnn",
    "register",
    "registered",
    "to_flax",
    "to_flax_elman",
    "to_flax_gru",
    "to_flax_lstm",
    "to_flax_simple",
    "to_nnx",
    "to_torch",
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
