"""Activation memory of a stack's gradient in float32 and with bfloat16 compute.

    python -m benchmarks.precision_memory
    python -m benchmarks.precision_memory --cells lstm --batch 32 --time 256 --hidden 256

For each cell, a stack built with ``dtype=None`` (float32) and with
``dtype=jnp.bfloat16`` (float32 parameters, bfloat16 matmuls, gate math and outputs, a
float32 carry; `seqnets.cells.dtypes`) is measured three ways, nothing timed:

* **kept for the backward pass**: the bytes of the residuals ``jax.vjp`` holds for the
  loss's gradient (the leaves of the VJP function, concrete arrays on this machine),
  by dtype. This is the activation memory the precision decides, whatever the backend
  does with it;
* **XLA temp**: ``temp_size_in_bytes`` of the compiled ``jax.grad`` (XLA's plan of the
  scratch memory, the residuals included) on the backend JAX runs on. XLA:CPU computes
  bfloat16 elementwise math in float32, so on the CPU this barely moves (or grows, for
  the conversions); on GPUs and TPUs bfloat16 is native;
* **XLA forward output**: ``output_size_in_bytes`` of the compiled forward pass, the
  ``ys`` that the next layer or the head reads.

Prints a markdown table with the bfloat16 / float32 ratios.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import seqnets as sn

CELLS = {"lstm": sn.lstm, "gru": sn.gru, "min_gru": sn.min_gru}


def measure(model: sn.Stack, batch: int, time: int, inputs: int) -> dict[str, float]:
    params = model.init(jax.random.key(0), inputs)
    xs = jax.random.normal(jax.random.key(1), (batch, time, inputs))

    def loss(params, xs):
        _, ys = model.apply(params, xs, hoist=True)
        return jnp.mean(ys.astype(jnp.float32) ** 2)

    _, vjp = jax.jit(lambda params, xs: jax.vjp(loss, params, xs))(params, xs)
    kept = {}
    for leaf in jax.tree.leaves(vjp):
        kept[leaf.dtype.name] = kept.get(leaf.dtype.name, 0) + leaf.size * leaf.dtype.itemsize
    grad = jax.jit(jax.grad(loss)).lower(params, xs).compile().memory_analysis()
    forward = jax.jit(lambda p, x: model.apply(p, x, hoist=True)[1]).lower(params, xs)
    forward = forward.compile().memory_analysis()
    return {"kept": sum(kept.values()), "kept_bf16": kept.get("bfloat16", 0),
            "temp": grad.temp_size_in_bytes, "output": forward.output_size_in_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=sorted(CELLS), choices=sorted(CELLS))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--inputs", type=int, default=32)
    args = parser.parse_args()
    print(f"{args.layers} layers, batch {args.batch}, T {args.time}, hidden {args.hidden}, "
          f"{args.inputs} inputs; backend {jax.default_backend()}, jax {jax.__version__}\n")
    print("| cell | compute | kept for backward, MiB (of which bf16) | ratio | XLA temp MiB "
          "| ratio | XLA forward output MiB | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    mib = 2.0**20
    for name in args.cells:
        rows = {}
        for label, dtype in (("float32", None), ("bfloat16", jnp.bfloat16)):
            model = sn.stack(CELLS[name](args.hidden), num_layers=args.layers, dtype=dtype)
            rows[label] = measure(model, args.batch, args.time, args.inputs)
        base = rows["float32"]
        for label, row in rows.items():
            print(f"| {name} | {label} | {row['kept'] / mib:.2f} ({row['kept_bf16'] / mib:.2f}) "
                  f"| {row['kept'] / base['kept']:.2f} | {row['temp'] / mib:.2f} "
                  f"| {row['temp'] / base['temp']:.2f} | {row['output'] / mib:.3f} "
                  f"| {row['output'] / base['output']:.2f} |")


if __name__ == "__main__":
    main()
