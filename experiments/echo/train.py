"""Training and evaluation of ``echo``: the carry kept across windows, or reset at each."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import optax
from tqdm import tqdm

from experiments import reporting, rundir
from experiments.echo.configs import Config, validate
from experiments.echo.input_pipeline import series
from experiments.echo.models import init_params, make_loss_fn, make_model
from seqnets.training import NonFiniteError, create_train_state
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows


class TrainResult(NamedTuple):
    """What `train` returns."""

    params: dict
    """The trained parameters."""
    window_losses: np.ndarray
    """The loss of every window, in training order, ``(epochs * windows_per_epoch,)``."""
    records: list[dict]
    """One record per epoch: ``epoch``, ``step``, mean ``loss``, first and last window's loss."""
    seconds: float
    """Training time, compilation included."""


def train(config: Config, keep_carry: bool, show_progress: bool) -> TrainResult:
    """Trains one model with the carry kept across windows (or reset at each).

    Raises:
      seqnets.training.NonFiniteError: at the end of the epoch in which a window's loss
        was not finite, naming its step.
    """
    model = make_model(config)
    # No skip_nonfinite here: with it, the fused epoch and the per-window loop compile
    # to float32 sums in different orders (1-ulp differences in the losses), and the two
    # loops are meant to agree bit for bit. The losses come to the host once per epoch
    # anyway, and are checked there.
    optimizer = optax.adagrad(config.learning_rate)
    state = create_train_state(init_params(model, jax.random.key(config.seed)), optimizer,
                               jax.random.key(config.seed + 1))
    zero = model.initial_carry(config.batch_size)
    reset_carry = None if keep_carry else zero
    loss_fn = make_loss_fn(model)
    window_losses, records = [], []
    if config.loop == "fused":
        epoch_step = make_epoch_step(loss_fn, optimizer, reset_carry=reset_carry)
    else:
        window_step = make_window_step(loss_fn, optimizer, reset_carry=reset_carry)
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), disable=not show_progress, leave=False,
               desc=f"carry {'keep' if keep_carry else 'reset'}", unit="epoch")
    for epoch in bar:
        windows = split_windows(series(config, [config.seed, epoch]), config.window)
        carry = zero  # each epoch's series is new: no state carries into it
        if config.loop == "fused":
            state, carry, metrics = epoch_step(state, carry, windows)
            losses = np.asarray(metrics["loss"])
        else:
            losses = []
            for k in range(windows[0].shape[0]):
                state, carry, metrics = window_step(state, carry, jax.tree.map(
                    lambda w, k=k: w[k], windows))
                losses.append(metrics["loss"])
            losses = np.asarray(jax.device_get(losses))
        if not np.all(np.isfinite(losses)):
            bad = int(np.argmin(np.isfinite(losses)))
            raise NonFiniteError(
                f"step {int(state.step) - len(losses) + bad + 1} (epoch {epoch + 1}, window "
                f"{bad + 1}): the loss is not finite. Lower --learning-rate."
            )
        window_losses.append(losses)
        records.append({"epoch": epoch + 1, "step": int(state.step),
                        "loss": float(losses.mean()),
                        "first_window_loss": float(losses[0]),
                        "last_window_loss": float(losses[-1])})
        bar.set_postfix(loss=f"{losses.mean():.4f}")
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    return TrainResult(state.params, np.concatenate(window_losses), records, seconds)


def evaluate(config: Config, params: dict, keep_carry: bool) -> dict:
    """Accuracy on a fresh series, in the carry mode the model was trained with."""
    model = make_model(config)
    x, y = series(config, [config.seed, 10**6])
    windows = split_windows((x, y), config.window)
    zero = model.initial_carry(config.batch_size)
    loss_fn = make_loss_fn(model)

    @jax.jit
    def run(params, windows):
        def body(carry, batch):
            _, (carry, metrics) = loss_fn(params, carry if keep_carry else zero, batch, None)
            return carry, metrics["predictions"]

        _, predictions = jax.lax.scan(body, zero, windows)
        return predictions  # (num_windows, batch, window)

    predictions = np.asarray(run(params, windows))
    predictions = predictions.transpose(1, 0, 2).reshape(x.shape)
    correct = predictions == y
    position = np.arange(x.shape[1])[None, :].repeat(x.shape[0], 0)
    knowable = position >= config.echo_step
    window_start = (position % config.window) < config.echo_step

    def share(mask: np.ndarray) -> float | None:
        # None (null in results.json) where no position qualifies, e.g. no position lies
        # inside a window once echo_step >= window.
        return float(correct[mask].mean()) if mask.any() else None

    return {
        "accuracy": float(correct.mean()),
        "knowable_accuracy": share(knowable),
        "row_start_accuracy": share(~knowable),
        "window_start_accuracy": share(knowable & window_start),
        "inside_window_accuracy": share(knowable & ~window_start),
        "reset_expectation": 1 - config.echo_step / (2 * config.window),
        "last_window": {"x": x[:, -config.window:].tolist(), "y": y[:, -config.window:].tolist(),
                        "predicted": predictions[:, -config.window:].tolist()},
    }


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains in each requested carry mode, writes metrics, figures and results."""
    config = validate(config)
    workdir = rundir.prepare_workdir(workdir, dataclasses.asdict(config), resume=False,
                                        overwrite=config.overwrite)
    modes = ["keep", "reset"] if config.carry == "both" else [config.carry]
    log = reporting.MetricsLog(workdir, keep_until_step=None)
    results = {"config": dataclasses.asdict(config), "runs": {}}
    for mode in modes:
        params, window_losses, records, seconds = train(config, mode == "keep", config.progress)
        for record in records:
            log.write({"carry": mode, **record})
        evaluation = evaluate(config, params, mode == "keep")
        plot_windows(
            workdir / f"echo_{mode}.png", window_losses, evaluation["last_window"],
            f"{config.cell} {config.hidden_size}, echo {config.echo_step}, window "
            f"{config.window}, carry {mode}",
        )
        windows = len(window_losses)
        results["runs"][mode] = {
            **{k: v for k, v in evaluation.items() if k != "last_window"},
            "final_loss": records[-1]["loss"],
            "train_seconds": seconds,
            "windows_per_second": windows / seconds,
            "windows": windows,
        }
        run = results["runs"][mode]
        print(
            f"carry {mode:5s}: knowable accuracy {run['knowable_accuracy']:.4f}  row-start "
            f"{run['row_start_accuracy']:.4f}  window-start {run['window_start_accuracy']:.4f}  "
            f"all {run['accuracy']:.4f}  ({windows} windows in {seconds:.1f} s, "
            f"{run['windows_per_second']:.0f} windows/s)", flush=True,
        )
    reporting.write_results(workdir, results)
    print(f"outputs in {workdir}")
    return results


def plot_windows(path: Path, window_losses: np.ndarray, last_window: dict, title: str) -> None:
    """The echo tutorial's figure: the loss per window, and the last window of each stream
    (inputs, target echoes, predicted echoes)."""
    plt = reporting.pyplot()
    rows = len(last_window["x"])
    fig = plt.figure(figsize=(12, 2.2 * (rows + 1)))
    ax = fig.add_subplot(rows + 1, 1, 1)
    ax.plot(window_losses, linewidth=0.6)
    ax.set(xlabel="window", ylabel="loss", title=title, yscale="log")
    for r in range(rows):
        ax = fig.add_subplot(rows + 1, 1, r + 2)
        steps = np.arange(len(last_window["x"][r]))
        ax.bar(steps - 0.27, last_window["x"][r], width=0.27, color="C0", label="input")
        ax.bar(steps, np.asarray(last_window["y"][r]) * 0.8, width=0.27, color="C2",
               label="target echo")
        ax.bar(steps + 0.27, np.asarray(last_window["predicted"][r]) * 0.6, width=0.27,
               color="C3", label="predicted echo")
        ax.set(ylim=(0, 1.1), yticks=[], ylabel=f"stream {r}")
        if r == 0:
            ax.legend(loc="upper right", ncol=3, fontsize=8)
    fig.tight_layout()
    reporting.save_figure(fig, path, dpi=90)
