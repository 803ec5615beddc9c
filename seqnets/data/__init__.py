"""Data: MNIST from several sources, and the echo task's binary streams."""

from seqnets.data.echo import echo_streams
from seqnets.data.mnist import MNIST, DataError, SourceUnavailableError, load_mnist

__all__ = ["MNIST", "DataError", "SourceUnavailableError", "echo_streams", "load_mnist"]
