"""Running cells over sequences: `scan` for one layer, `stack` for layers and directions."""

from seqnets.sequence.scan import scan
from seqnets.sequence.stack import Stack, final_outputs, stack

__all__ = ["Stack", "final_outputs", "scan", "stack"]
