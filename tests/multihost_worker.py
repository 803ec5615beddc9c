"""One process of the multi-process data-parallel test (run by tests/test_parallel.py).

    python tests/multihost_worker.py OUT.npz NUM_PROCESSES PROCESS_ID PORT LOCAL_DEVICES

Trains an LSTM for a few Adam steps on a fixed global batch of 32, each process feeding
its own rows, and (process 0) writes the final parameters to OUT.npz.
"""

import sys

import jax

out, num_processes, process_id, port, local_devices = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
jax.config.update("jax_num_cpu_devices", local_devices)

from seqnets.parallel import multihost  # noqa: E402

if num_processes > 1:
    multihost.initialize(f"127.0.0.1:{port}", num_processes, process_id)

import numpy as np  # noqa: E402
import optax  # noqa: E402

import seqnets as sn  # noqa: E402
from seqnets import parallel  # noqa: E402
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy  # noqa: E402

GLOBAL_BATCH, STEPS = 32, 4
cell = sn.lstm(16)


def loss_fn(params, batch, key):
    x, y = batch
    carry, _ = sn.scan(cell, params["rnn"], x)
    return softmax_cross_entropy(carry[1] @ params["w"], y), {}


k1, k2 = jax.random.split(jax.random.key(0))
params = {"rnn": cell.init(k1, 8), "w": 0.1 * jax.random.normal(k2, (16, 10))}
optimizer = optax.adam(1e-3)
mesh = parallel.data_mesh()
assert mesh.size == num_processes * local_devices, mesh
state = parallel.replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
step = make_train_step(loss_fn, optimizer)

rng = np.random.default_rng(0)
share = GLOBAL_BATCH // num_processes
rows = slice(process_id * share, (process_id + 1) * share)
for _ in range(STEPS):
    x = rng.normal(size=(GLOBAL_BATCH, 12, 8)).astype(np.float32)
    y = rng.integers(0, 10, GLOBAL_BATCH).astype(np.int32)
    state, metrics = step(state, parallel.global_batch((x[rows], y[rows]), mesh))

# Replicated arrays: every process holds a full copy.
leaves = [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree.leaves(state.params)]
if process_id == 0:
    np.savez(out, *leaves)
print(f"process {process_id}: done, loss {float(metrics['loss'].addressable_data(0)):.6f}")
