"""Data: MNIST from several sources, the Penn Treebank, language-model token streams, the
echo task's binary streams, and the synthetic recall tasks (MQAR, selective copying)."""

from seqnets.data.echo import echo_streams
from seqnets.data.mnist import MNIST, DataError, SourceUnavailableError, load_mnist
from seqnets.data.mqar import IGNORE, TokenTask, mqar_examples, selective_copying_examples
from seqnets.data.ptb import PTB, load_ptb
from seqnets.data.streams import lm_streams

__all__ = [
    "IGNORE",
    "MNIST",
    "PTB",
    "DataError",
    "SourceUnavailableError",
    "TokenTask",
    "echo_streams",
    "lm_streams",
    "load_mnist",
    "load_ptb",
    "mqar_examples",
    "selective_copying_examples",
]
