"""Windows per second of truncated-BPTT training: one fused epoch vs a per-window loop.

    python -m benchmarks.tbptt_windows [--epochs 5] [--cell elman]

Workload: the echo task's set-up (5 streams, windows of 15 steps, Elman 4 units, a
2-class head per step, Adagrad), 666 windows per epoch. Both ways do the same arithmetic
(tests/test_tbptt.py checks they give the same parameters bit for bit); the ratio is the
figure that counts, since these machines are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import optax

from experiments import echo, models
from seqnets.cpu import tune_allocator
from seqnets.training import create_train_state
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows


def measure(config: echo.Config, epochs: int) -> dict[str, float]:
    model = echo.make_model(config)
    loss_fn = echo.make_loss_fn(model)
    optimizer = optax.adagrad(config.learning_rate)
    zero = model.initial_carry(config.batch_size)
    windows = split_windows(echo.series(config, 0), config.window)
    count = windows[0].shape[0]
    per_window = [jax.tree.map(lambda w, k=k: w[k], windows) for k in range(count)]

    epoch_step = make_epoch_step(loss_fn, optimizer)
    window_step = make_window_step(loss_fn, optimizer)

    def fused_epoch(state):
        state, _, _ = epoch_step(state, zero, windows)
        return state

    def python_epoch(state):
        carry = zero
        for batch in per_window:
            state, carry, _ = window_step(state, carry, batch)
        return state

    state = create_train_state(echo.init_params(model, jax.random.key(0)), optimizer,
                               jax.random.key(1))
    times: dict[str, list[float]] = {"fused": [], "python": []}
    compile_seconds = {}
    for name, run in (("fused", fused_epoch), ("python", python_epoch)):
        start = time.perf_counter()
        jax.block_until_ready(run(state))  # compile and warm up
        compile_seconds[name] = time.perf_counter() - start
    for _ in range(epochs):  # interleaved, so that both see the same machine noise
        for name, run in (("fused", fused_epoch), ("python", python_epoch)):
            start = time.perf_counter()
            jax.block_until_ready(run(state))
            times[name].append(time.perf_counter() - start)
    result = {f"{name}_windows_per_second": count / statistics.median(ts)
              for name, ts in times.items()}
    result["ratio"] = result["fused_windows_per_second"] / result["python_windows_per_second"]
    result["windows_per_epoch"] = count
    result.update({f"{k}_first_call_seconds": v for k, v in compile_seconds.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per way (median)")
    parser.add_argument("--cell", default="elman", choices=sorted(models.CELLS))
    parser.add_argument("--hidden-size", type=int, default=4)
    args = parser.parse_args()
    config = echo.Config(cell=args.cell, hidden_size=args.hidden_size)
    result = measure(config, args.epochs)
    print(f"TBPTT echo workload, {args.cell} {args.hidden_size}, "
          f"{result['windows_per_epoch']} windows/epoch, jax {jax.__version__}, "
          f"{jax.devices()[0].device_kind}")
    print(f"  fused lax.scan epoch : {result['fused_windows_per_second']:>10,.0f} windows/s")
    print(f"  per-window jit loop  : {result['python_windows_per_second']:>10,.0f} windows/s")
    print(f"  ratio fused / loop   : {result['ratio']:>10.1f}x")
    print(f"  first call (compile) : fused {result['fused_first_call_seconds']:.2f} s, "
          f"loop {result['python_first_call_seconds']:.2f} s")


if __name__ == "__main__":
    tune_allocator()
    main()
