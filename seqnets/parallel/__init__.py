"""Data-parallel training: jit + sharding over a ("data",) mesh, pmap, shard_map, many hosts."""

from seqnets.parallel.data_parallel import (
    AXIS,
    check_batch_divides,
    data_mesh,
    global_batch,
    make_pmap_train_step,
    make_shard_map_train_step,
    mean_over_replicas,
    mean_over_shards,
    replicate,
    shard_batch,
    split_for_pmap,
    stack_for_pmap,
    unstack_from_pmap,
)

__all__ = [
    "AXIS",
    "check_batch_divides",
    "data_mesh",
    "global_batch",
    "make_pmap_train_step",
    "make_shard_map_train_step",
    "mean_over_replicas",
    "mean_over_shards",
    "replicate",
    "shard_batch",
    "split_for_pmap",
    "stack_for_pmap",
    "unstack_from_pmap",
]
