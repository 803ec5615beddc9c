"""Peak memory of a jitted gradient step with and without ``scan(..., checkpoint=k)``.

    python -m benchmarks.checkpoint_memory
    python -m benchmarks.checkpoint_memory --times 1024 4096 --batch 8 --hidden 64

Reads XLA's own accounting of the compiled program
(``jax.jit(grad).lower(...).compile().memory_analysis()``): ``temp_size_in_bytes`` is
the scratch memory the step allocates (residuals saved for the backward pass and the
backward pass's own buffers); arguments and outputs are listed apart. Nothing runs: only
compilation, so large T is cheap. ``k`` defaults to ``round(sqrt(T))``, which minimises
``T / k + k``. The table also splits off the part that no checkpointing can remove:
`scan` returns every step's output, and the backward pass holds that ``(T, batch,
hidden)`` array and its cotangent; the rest is what the recurrence keeps for its backward
pass. Prints a markdown table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

import seqnets as sn

CELLS = {"lstm": sn.lstm, "min_gru": sn.min_gru, "lru": sn.lru}


def analysis(cell: sn.Cell, batch: int, steps: int, inputs: int, checkpoint: int | None,
             mode: str):
    params = cell.init(jax.random.key(0), inputs)
    xs = jax.ShapeDtypeStruct((batch, steps, inputs), jnp.float32)

    def loss(params, xs):
        # A loss of the last output, as a sequence classifier's: a loss of every output
        # would hold ys and its gradient, (T, batch, hidden) each, whatever the scan does.
        _, ys = sn.scan(cell, params, xs, checkpoint=checkpoint, mode=mode)
        return jnp.mean(ys[:, -1] ** 2)

    return jax.jit(jax.grad(loss)).lower(params, xs).compile().memory_analysis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--cells", nargs="+", default=["lstm", "min_gru"], choices=sorted(CELLS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--inputs", type=int, default=1)
    parser.add_argument("--mode", default="sequential")
    args = parser.parse_args()
    print(f"batch {args.batch}, hidden {args.hidden}, {args.inputs} input(s), mode "
          f"{args.mode} (classic cells: sequential); jax {jax.__version__}\n")
    print("| cell | T | k | temp MiB, no checkpoint | temp MiB, checkpoint=k | ratio "
          "| of which ys and its gradient | rest, no checkpoint | rest, checkpoint=k |")
    print("|---|---|---|---|---|---|---|---|---|")
    mib = 2.0**20
    for name in args.cells:
        cell = CELLS[name](args.hidden)
        mode = args.mode if cell.recurrence is not None else "sequential"
        for steps in args.times:
            k = max(1, round(math.sqrt(steps)))
            plain = analysis(cell, args.batch, steps, args.inputs, None, mode)
            blocked = analysis(cell, args.batch, steps, args.inputs, k, mode)
            a, b = plain.temp_size_in_bytes / mib, blocked.temp_size_in_bytes / mib
            # scan returns every output: ys (T, batch, hidden) float32, and the backward
            # pass needs its cotangent, as large. Both are O(T) whatever the checkpointing.
            ys = 2 * steps * args.batch * cell.hidden_size * 4 / mib
            print(f"| {name} | {steps:,} | {k} | {a:,.1f} | {b:,.1f} | {a / b:.1f}x | "
                  f"{ys:,.1f} | {a - ys:,.1f} | {b - ys:,.2f} |", flush=True)


if __name__ == "__main__":
    main()
