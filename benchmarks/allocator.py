"""glibc allocator settings for XLA:CPU training: in-process ``mallopt`` against the environment.

    python -m benchmarks.allocator [--rounds 3] [--steps 60]

Times the row-MNIST LSTM-128 train step (batch 128, 28 steps, Adam) on one CPU device in
fresh subprocesses, one per setting and round, interleaved:

* ``default``: glibc as the process starts;
* ``env``: ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set to 16 GiB before
  the process starts (what an experiment launcher can do by re-executing itself);
* ``mallopt``: `seqnets.cpu.tune_allocator` called in-process, first thing.

Prints steps/s per setting and round, and each setting's median as a ratio to ``default``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ENV = {"MALLOC_MMAP_THRESHOLD_": str(16 * 2**30), "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30)}


def worker(setting: str, steps: int) -> None:
    if setting == "mallopt":
        from seqnets.cpu import tune_allocator

        assert tune_allocator(), "mallopt was not applied"
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import seqnets as sn
    from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy

    cell = sn.lstm(128)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": cell.init(k1, 28), "w": 0.1 * jax.random.normal(k2, (128, 10))}

    def loss_fn(params, batch, key):
        x, y = batch
        carry, _ = sn.scan(cell, params["rnn"], x)
        return softmax_cross_entropy(carry[1] @ params["w"], y), {}

    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    step = make_train_step(loss_fn, optimizer)
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(rng.random((128, 28, 28), np.float32)),
             jnp.asarray(rng.integers(0, 10, 128).astype(np.int32)))
    for _ in range(5):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    print(json.dumps({"steps_per_second": steps / (time.perf_counter() - start)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--worker", choices=["default", "env", "mallopt"])
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    settings = ["default", "env", "mallopt"]
    results: dict[str, list[float]] = {s: [] for s in settings}
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base["XLA_FLAGS"] = base.get("XLA_FLAGS", "")  # one CPU device whatever the caller has
    for r in range(args.rounds):
        for s in settings[r % 3:] + settings[: r % 3]:
            env = {**base, **(ENV if s == "env" else {})}
            out = subprocess.run([sys.executable, "-m", "benchmarks.allocator", "--worker", s,
                                  "--steps", str(args.steps)], env=env, capture_output=True,
                                 text=True, check=True)
            value = json.loads(out.stdout.strip().splitlines()[-1])["steps_per_second"]
            results[s].append(value)
            print(f"round {r + 1} {s:8s} {value:7.2f} steps/s", flush=True)
    ref = statistics.median(results["default"])
    for s in settings:
        med = statistics.median(results[s])
        print(f"{s:8s} median {med:7.2f} steps/s  ratio to default {med / ref:.2f}x")


if __name__ == "__main__":
    main()
