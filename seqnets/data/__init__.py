"""Data: MNIST from several sources, the Penn Treebank, language-model token streams, and the
echo task's binary streams."""

from seqnets.data.echo import echo_streams
from seqnets.data.mnist import MNIST, DataError, SourceUnavailableError, load_mnist
from seqnets.data.ptb import PTB, load_ptb
from seqnets.data.streams import lm_streams

__all__ = [
    "MNIST",
    "PTB",
    "DataError",
    "SourceUnavailableError",
    "echo_streams",
    "lm_streams",
    "load_mnist",
    "load_ptb",
]
