"""``python -m experiments.echo``: the process's allocator setting, then the command line."""

from experiments.echo.main import main
from seqnets.cpu import tune_allocator

tune_allocator()  # glibc keeps freed memory for the next step (see seqnets.cpu)
main()
