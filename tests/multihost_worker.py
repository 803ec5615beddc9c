"""One process of the multi-process data-parallel test (run by tests/test_parallel.py).

    python tests/multihost_worker.py OUT.npz NUM_PROCESSES PROCESS_ID PORT LOCAL_DEVICES

Trains the LSTM of ``multihost_model`` for a few SGD steps on a fixed global batch, each
process feeding its own rows, and (process 0) writes the parameters before every step and
after the last to OUT.npz, as ``step{k}/{leaf index}``.
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
from multihost_model import GLOBAL_BATCH, LR, batches, init_params, loss_fn  # noqa: E402

from seqnets import parallel  # noqa: E402
from seqnets.training import create_train_state, make_train_step  # noqa: E402

optimizer = optax.sgd(LR)
mesh = parallel.data_mesh()
assert mesh.size == num_processes * local_devices, mesh
state = parallel.replicate(create_train_state(init_params(), optimizer, jax.random.key(1)), mesh)
step = make_train_step(loss_fn, optimizer, donate=False)


def local_leaves(state):  # replicated arrays: every process holds a full copy
    return [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree.leaves(state.params)]


saved = {}
share = GLOBAL_BATCH // num_processes
rows = slice(process_id * share, (process_id + 1) * share)
for k, (x, y) in enumerate(batches()):
    saved.update({f"step{k}/{i}": leaf for i, leaf in enumerate(local_leaves(state))})
    state, metrics = step(state, parallel.global_batch((x[rows], y[rows]), mesh))
saved.update({f"step{k + 1}/{i}": leaf for i, leaf in enumerate(local_leaves(state))})
if process_id == 0:
    np.savez(out, **saved)
print(f"process {process_id}: done, loss {float(metrics['loss'].addressable_data(0)):.6f}")
