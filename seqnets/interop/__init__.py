"""Conversions to and from Flax and PyTorch parameters, and a Flax linen wrapper."""

from seqnets.interop.flax import (
    RNN,
    from_flax_gru,
    from_flax_lstm,
    from_flax_simple,
    to_flax_gru,
    to_flax_lstm,
    to_flax_simple,
)
from seqnets.interop.torch import (
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_torch_gru,
    to_torch_lstm,
    to_torch_rnn,
)

__all__ = [
    "RNN",
    "from_flax_gru",
    "from_flax_lstm",
    "from_flax_simple",
    "from_torch_gru",
    "from_torch_lstm",
    "from_torch_rnn",
    "to_flax_gru",
    "to_flax_lstm",
    "to_flax_simple",
    "to_torch_gru",
    "to_torch_lstm",
    "to_torch_rnn",
]
