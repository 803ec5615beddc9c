"""The donating train step, before and after `create_train_state` copied the caller's arrays.

    python -m benchmarks.train_step_donation
    python -m benchmarks.train_step_donation --batch 64 --time 28 --hidden 128 --repeats 50

`make_train_step` donates the state passed to it. `create_train_state` used to put the
caller's own parameter arrays (and key) into that state, so the first step deleted them;
it now copies them once. This measures what that costs, on an LSTM classifier of MNIST
rows' shape:

* XLA's memory analysis of the compiled step, donating (the default) and not: the
  arguments, the outputs, the bytes aliased (donated buffers reused for the new state)
  and the temp memory. The step's program is the same whichever way its state was made:
  the copy happens once, outside it;
* the time of one step on a state made by copying (now) and on one holding the caller's
  arrays (before), interleaved in one process, median of ``--repeats``;
* the time of `create_train_state` itself, and of the one copy it adds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import seqnets as sn
from seqnets.training import TrainState, create_train_state, make_train_step
from seqnets.training.losses import softmax_cross_entropy


def problem(batch: int, steps: int, inputs: int, hidden: int):
    cell = sn.lstm(hidden)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": cell.init(k1, inputs), "w": 0.1 * jax.random.normal(k2, (hidden, 10))}

    def loss_fn(params, data, key):
        x, y = data
        carry, _ = sn.scan(cell, params["rnn"], x)
        return softmax_cross_entropy(carry[1] @ params["w"], y), {}

    data = (jax.random.normal(jax.random.key(1), (batch, steps, inputs)),
            jnp.arange(batch) % 10)
    return params, loss_fn, data


def old_state(params, optimizer, key) -> TrainState:
    """`create_train_state` before the copy: the caller's arrays go into the state."""
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), key)


def timed(step, state, data, repeats: int) -> tuple[float, TrainState]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, data)
        metrics["loss"].block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time", type=int, default=28)
    parser.add_argument("--inputs", type=int, default=28)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    params, loss_fn, data = problem(args.batch, args.time, args.inputs, args.hidden)
    optimizer = optax.adam(1e-3)
    key = jax.random.key(2)
    print(f"LSTM {args.hidden}, batch {args.batch}, T {args.time}; backend "
          f"{jax.default_backend()}, jax {jax.__version__}\n")

    kib = 1024.0
    print("| step | arguments KiB | outputs KiB | aliased KiB | temp KiB |")
    print("|---|---|---|---|---|")
    for donate in (True, False):
        step = make_train_step(loss_fn, optimizer, donate=donate)
        m = step.lower(create_train_state(params, optimizer, key), data).compile().memory_analysis()
        print(f"| donate={donate} | {m.argument_size_in_bytes / kib:.1f} | "
              f"{m.output_size_in_bytes / kib:.1f} | {m.alias_size_in_bytes / kib:.1f} | "
              f"{m.temp_size_in_bytes / kib:.1f} |")

    step = make_train_step(loss_fn, optimizer)
    fresh = lambda tree: jax.tree.map(lambda x: x.copy(), tree)  # noqa: E731
    # One warm-up call each compiles the step (the same program for both states).
    new = create_train_state(params, optimizer, key)
    before = old_state(fresh(params), optimizer, fresh(key))
    new, _ = step(new, data)
    before, _ = step(before, data)
    new_times, old_times = [], []
    for _ in range(5):  # interleaved rounds: load on the machine hits both alike
        t, new = timed(step, new, data, args.repeats // 5)
        new_times.append(t)
        t, before = timed(step, before, data, args.repeats // 5)
        old_times.append(t)
    creation, copy = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(create_train_state(params, optimizer, key))
        creation.append(time.perf_counter() - start)
        start = time.perf_counter()
        jax.block_until_ready(fresh(params))
        copy.append(time.perf_counter() - start)
    new_ms, old_ms = statistics.median(new_times) * 1e3, statistics.median(old_times) * 1e3
    print(f"\nstep on a copied state (now): {new_ms:.3f} ms; on the caller's arrays (before): "
          f"{old_ms:.3f} ms; ratio {new_ms / old_ms:.3f}")
    print(f"create_train_state: {statistics.median(creation) * 1e3:.3f} ms, of which the "
          f"parameter copy {statistics.median(copy) * 1e3:.3f} ms (once per run)")
    print(f"the caller's parameters after the steps: "
          f"{'usable' if not any(x.is_deleted() for x in jax.tree.leaves(params)) else 'DELETED'}")


if __name__ == "__main__":
    main()
