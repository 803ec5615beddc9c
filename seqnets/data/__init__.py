"""Data: MNIST from several sources, and the echo task's binary streams."""

from seqnets.data.mnist import MNIST, DataError, SourceUnavailable, load_mnist

__all__ = ["MNIST", "DataError", "SourceUnavailable", "load_mnist"]
