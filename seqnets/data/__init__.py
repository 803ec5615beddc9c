"""Data: MNIST from several sources, the Penn Treebank, and the echo task's binary streams."""

from seqnets.data.echo import echo_streams
from seqnets.data.mnist import MNIST, DataError, SourceUnavailableError, load_mnist
from seqnets.data.ptb import PTB, load_ptb

__all__ = [
    "MNIST",
    "PTB",
    "DataError",
    "SourceUnavailableError",
    "echo_streams",
    "load_mnist",
    "load_ptb",
]
