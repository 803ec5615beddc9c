"""Data: MNIST from several sources, the Penn Treebank, the echo task's binary streams, and
the synthetic recall tasks (MQAR, selective copying)."""

from seqnets.data.echo import echo_streams
from seqnets.data.mnist import MNIST, DataError, SourceUnavailableError, load_mnist
from seqnets.data.mqar import IGNORE, TokenTask, mqar_examples, selective_copying_examples
from seqnets.data.ptb import PTB, load_ptb

__all__ = [
    "IGNORE",
    "MNIST",
    "PTB",
    "DataError",
    "SourceUnavailableError",
    "TokenTask",
    "echo_streams",
    "load_mnist",
    "load_ptb",
    "mqar_examples",
    "selective_copying_examples",
]
