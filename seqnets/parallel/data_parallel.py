"""Data parallelism: the same train step on one device, many devices, or many hosts.

Three ways, each tested against one device on the same global batch:

* **shard_map** (`make_shard_map_train_step`, recommended for RNNs): per-device code with
  explicit collectives, on a ``("data",)`` mesh with the train state replicated and the
  batch sharded on its leading axis. Inside ``shard_map`` the gradient of a replicated
  parameter is already summed over devices, so `mean_over_shards` divides it by the
  device count (``pmean(grad)`` would be N times too large). `seqnets.scan` casts the
  parameters to vary across devices once, before its loop (`seqnets.varying`), so the
  only all-reduce comes after the backward pass.
* **jit + sharding**: the same inputs, and the unchanged jitted step from
  `seqnets.training.make_train_step`; XLA's partitioner inserts the gradient all-reduce.
  For an RNN it places one inside the backward time loop, which can make it slower
  than one device (figures in ``docs/parallel.md``). Works across hosts too (`global_batch`
  assembles each process's share).
* **pmap** (`make_pmap_train_step`): for code bases that still use it; loss and gradients
  averaged with ``lax.pmean`` over a named axis (`mean_over_replicas`).

The one-device step, these steps and the TBPTT steps share one update
(`seqnets.training.gradient_update`); the parallel ones differ only in their `Reduce`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from seqnets.training.state import TrainState
from seqnets.training.step import LossFn, Reduce, train_step_fn
from seqnets.types import Array

AXIS = "data"


def data_mesh(num_devices: int | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"data"``.

    Args:
      num_devices: use the first ``num_devices`` of ``devices`` (default: all of them).
      devices: the devices (default: ``jax.devices()``, every device of every process).

    Raises:
      ValueError: when more devices are asked for than exist.
    """
    devices = list(jax.devices() if devices is None else devices)
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"asked for {num_devices} devices; {len(devices)} are available "
                f"({devices[0].platform}). On a CPU, make more before JAX starts, with "
                "seqnets.cpu.use_cores_as_devices(N) at the top of the program or "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N in the environment."
            )
        devices = devices[:num_devices]
    return Mesh(np.array(devices), (AXIS,))


def check_batch_divides(global_batch_size: int, num_devices: int) -> int:
    """Returns the per-device batch size; raises ValueError if it is not a whole number."""
    if global_batch_size % num_devices:
        lower = global_batch_size - global_batch_size % num_devices
        raise ValueError(
            f"the global batch of {global_batch_size} does not divide over {num_devices} "
            f"devices; use a multiple of {num_devices} (e.g. {lower or num_devices} or "
            f"{lower + num_devices}), or a mesh over a device count that divides it "
            "(seqnets.parallel.data_mesh(num_devices))."
        )
    return global_batch_size // num_devices


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` on every device of ``mesh`` (typed PRNG keys included).

    The result never shares buffers with ``tree``, so a train step that donates its
    state cannot delete the arrays the caller still holds. With several processes, each
    must pass the same values (e.g. from the same seed).
    """
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        # device_put may reuse the input's buffer for device 0 even with may_alias=False.
        fresh = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, tree)
        return jax.device_put(fresh, sharding)

    def place(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = place(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(place, tree)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Splits every leaf's leading (batch) axis over the mesh; one process holds it all.

    Raises:
      ValueError: when the batch does not divide over the devices.
    """
    for leaf in jax.tree.leaves(batch):
        check_batch_divides(np.shape(leaf)[0], mesh.size)
    return jax.device_put(batch, NamedSharding(mesh, P(AXIS)))


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Assembles a batch sharded over all processes from each process's own rows.

    Every process calls it with its share, ``(global_batch / process_count, ...)``, in
    process order; the result is a global array whose leading axis is the whole batch.
    With one process it is `shard_batch`.
    """
    sharding = NamedSharding(mesh, P(AXIS))

    def make(leaf):
        leaf = np.asarray(leaf)
        global_shape = (leaf.shape[0] * jax.process_count(), *leaf.shape[1:])
        check_batch_divides(global_shape[0], mesh.size)
        return jax.make_array_from_process_local_data(sharding, leaf, global_shape)

    return jax.tree.map(make, local_batch)


def mean_over_replicas(axis_name: str = AXIS) -> Reduce:
    """The `Reduce` of a step whose parameters are per-device copies (``pmap``).

    Each device's gradient is that of its own shard's loss; the mean over ``axis_name``
    of loss, gradient and metrics is the global batch's.
    """

    def reduce(loss: Array, grads: Any, metrics: dict) -> tuple[Array, Any, dict]:
        return jax.lax.pmean((loss, grads, metrics), axis_name)

    return reduce


def mean_over_shards(axis_name: str = AXIS) -> Reduce:
    """The `Reduce` of a ``shard_map`` step whose parameters are replicated (``P()``).

    Inside ``shard_map`` the gradient with respect to a replicated parameter comes out
    already summed over the devices (the transpose of its cast to "varying" is a psum),
    so it is divided by the device count rather than averaged again; ``pmean`` of it would
    be N times too large. Loss and metrics, which vary by device, are averaged.
    """

    def reduce(loss: Array, grads: Any, metrics: dict) -> tuple[Array, Any, dict]:
        count = jax.lax.axis_size(axis_name)
        loss, metrics = jax.lax.pmean((loss, metrics), axis_name)
        return loss, jax.tree.map(lambda g: g / count, grads), metrics

    return reduce


def make_pmap_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    axis_name: str = AXIS,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """A ``jax.pmap`` train step: ``(state, batch) -> (state, metrics)``.

    ``state`` carries a leading device axis (`stack_for_pmap`), ``batch`` leaves are
    ``(devices, per_device_batch, ...)`` (`split_for_pmap`). Loss, gradients and metrics
    are averaged with `mean_over_replicas`, so every device applies the update of the
    global batch mean. The step's PRNG key is the same on every device.
    """
    step = train_step_fn(loss_fn, optimizer, reduce=mean_over_replicas(axis_name))
    return jax.pmap(step, axis_name=axis_name)


def stack_for_pmap(tree: Any, num_devices: int) -> Any:
    """Gives each leaf a leading axis of ``num_devices`` copies (what pmap replicates)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_devices, *jnp.shape(x))), tree)


def split_for_pmap(batch: Any, num_devices: int) -> Any:
    """Reshapes each leaf ``(global_batch, ...)`` to ``(num_devices, per_device, ...)``."""

    def split(x):
        per_device = check_batch_divides(np.shape(x)[0], num_devices)
        return jnp.reshape(x, (num_devices, per_device, *np.shape(x)[1:]))

    return jax.tree.map(split, batch)


def unstack_from_pmap(tree: Any) -> Any:
    """The copy on the first device of a pmapped (replicated) tree."""
    return jax.tree.map(lambda x: x[0], tree)


def make_shard_map_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """A jitted ``jax.shard_map`` train step over ``mesh``'s ``"data"`` axis.

    Takes and returns the same replicated state and sharded batch as the jit + sharding
    path (`replicate`, `shard_batch`), and the same metrics as
    `seqnets.training.make_train_step`. Inside, each device computes its shard's loss and
    gradient, combined by `mean_over_shards`. With ``donate=True`` the state passed in is
    consumed.
    """
    step = jax.shard_map(
        train_step_fn(loss_fn, optimizer, reduce=mean_over_shards(AXIS)),
        mesh=mesh,
        in_specs=(P(), P(AXIS)),
        out_specs=(P(), P()),
    )
    return jax.jit(step, donate_argnums=(0,) if donate else ())
