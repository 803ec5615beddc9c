"""MQAR: one model per cell on the classification trainer, then the query accuracy of
each on every point of the grid; ``results.json``, a table and a plot in the workdir."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax

from experiments import classification, reporting, rundir
from experiments.mqar import input_pipeline
from experiments.mqar.configs import Config, validate
from experiments.mqar.models import FAMILIES, init_params, logits, make_model, state_size

TABLE_FILE = "results.md"
PLOT_FILE = "mqar.png"


def cell_task(config: Config, cell: str, data: classification.Data,
              tests: dict[input_pipeline.GridPoint, tuple]) -> classification.Task:
    """The trainer's task for ``cell``: its final parameters are scored on every grid point."""
    model = make_model(cell, config.width, config.vocab_size, num_layers=config.num_layers)

    def report(evaluate) -> dict:
        return {"grid": [{"seq_len": pt.seq_len, "pairs": pt.pairs,
                          "accuracy": evaluate(arrays)[1]} for pt, arrays in tests.items()]}

    return classification.Task(
        init_params=lambda key: init_params(model, key),
        logits=lambda params, tokens, key: logits(model, params, tokens),
        load_data=lambda: data,
        title=f"MQAR, {cell} (width {config.width}, vocabulary {config.vocab_size})",
        report=report,
    )


def train_cell(config: Config, workdir: Path, cell: str, data, tests) -> list[dict]:
    """Trains ``cell`` in ``workdir/cell`` (or reads its finished results; resumes its
    checkpoints with ``--resume``) and returns its records of `results.json`'s runs."""
    path = workdir / cell
    done = path / rundir.RESULTS_FILE
    if config.resume and done.exists():
        results = json.loads(done.read_text())
    else:
        resume = config.resume and (path / rundir.CONFIG_FILE).exists()
        cell_config = dataclasses.replace(config, cells=(cell,), resume=resume,
                                          workdir=str(path))
        results = classification.train_and_evaluate(cell_config, path,
                                                     cell_task(config, cell, data, tests))
    model = make_model(cell, config.width, config.vocab_size, num_layers=config.num_layers)
    params = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    common = {"cell": cell, "family": FAMILIES[cell], "state_size": state_size(model.cell),
              "parameters": sum(leaf.size for leaf in jax.tree.leaves(params)),
              "train_seq_len": max(config.seq_lens), "steps": results["steps"],
              "train_seconds": results["wall_seconds"]}
    return [common | point for point in results["grid"]]


def table(runs: list[dict]) -> str:
    """A Markdown table: one row per cell, one column per (length, pairs), accuracy in %."""
    points = sorted({(r["seq_len"], r["pairs"]) for r in runs})
    cells = list(dict.fromkeys(r["cell"] for r in runs))
    acc = {(r["cell"], r["seq_len"], r["pairs"]): r["accuracy"] for r in runs}
    info = {r["cell"]: r for r in runs}
    head = ["cell", "family", "state per layer"] + [f"T {t}, {p} pairs" for t, p in points]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        row = [f"`{c}`", info[c]["family"], f"{info[c]['state_size']:,}"]
        row += [f"{100 * acc[c, t, p]:.1f}" for t, p in points]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: Path) -> None:
    """Accuracy against pairs, one line per cell, one panel per sequence length."""
    plt = reporting.pyplot()
    lengths = sorted({r["seq_len"] for r in runs})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths) + 1.5, 4),
                             squeeze=False)
    for ax, length in zip(axes[0], lengths, strict=True):
        for cell in dict.fromkeys(r["cell"] for r in runs):
            pts = sorted((r["pairs"], r["accuracy"]) for r in runs
                         if r["cell"] == cell and r["seq_len"] == length)
            style = "-" if FAMILIES[cell] == "delta rule" else "--"
            ax.plot([p for p, _ in pts], [100 * a for _, a in pts], style, marker="o",
                    label=cell)
        ax.set_xscale("log", base=2)
        ax.set(title=f"sequence length {length}", xlabel="key-value pairs",
               ylabel="query accuracy (%)", ylim=(0, 102))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    reporting.save_figure(fig, path)


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains every cell of ``--cells`` in turn; writes ``results.json`` (a ``"runs"`` list:
    one record per cell and grid point), ``results.md`` and ``mqar.png``; returns the
    results."""
    config = validate(config)
    start = time.perf_counter()
    with rundir.locked(workdir):
        path = rundir.prepare_workdir(workdir, dataclasses.asdict(config), resume=config.resume,
                                      overwrite=config.overwrite)
        data, tests = input_pipeline.load(config.seq_lens, config.pairs, config.vocab_size,
                                          config.train_examples, config.test_examples,
                                          config.data_seed)
        runs = []
        for cell in config.cells:
            runs += train_cell(config, path, cell, data, tests)
            partial = {"runs": runs, "wall_seconds": time.perf_counter() - start}
            reporting.write_results(path, partial)  # a crash keeps the cells done
        results = {"runs": runs, "config": dataclasses.asdict(config),
                   "wall_seconds": time.perf_counter() - start}
        reporting.write_results(path, results)
        rundir.write_atomic(path / TABLE_FILE, table(runs))
        plot(runs, path / PLOT_FILE)
        print(table(runs) + f"\nwall time {results['wall_seconds']:.0f} s; outputs in {path}")
        return results
