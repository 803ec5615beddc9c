"""``python -m experiments.pixel_mnist``: the process's CPU settings, then the command line."""

from experiments.pixel_mnist.main import main
from seqnets.cpu import tune_allocator, use_cores_as_devices

tune_allocator()  # glibc keeps freed memory for the next step (see seqnets.cpu)
use_cores_as_devices()  # on a CPU host, one JAX device per core (see seqnets.cpu)
main()
