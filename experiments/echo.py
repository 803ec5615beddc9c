"""Echo-RNN with stateful truncated BPTT: repeat a random bit stream ``echo_step`` steps later.

    python -m experiments.echo                      # the tutorial's set-up, keep vs reset
    python -m experiments.echo --echo-step 20 --cell lstm --carry keep
    python -m experiments.echo --help               # every option

The tutorial set-up: a 50,000-bit series cut into 5 contiguous rows, windows of 15 steps,
an Elman network with 4 units, 2 classes, Adagrad 0.3, 100 epochs of fresh data, the carry
zeroed at each epoch's start and carried from each window into the next. Each epoch runs
as one compiled ``lax.scan`` over its windows (``--loop python`` runs one jitted call per
window instead, with the same arithmetic).

``--carry both`` (the default) trains with the carry kept across windows and with it reset
at every window, and reports both. Accuracy is measured on a fresh series, separately for
the positions whose echo source lies in the same row ("knowable") and for the first
``echo_step`` positions of each row, which no state can know.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import seqnets as sn
from experiments import cli, models, reporting
from seqnets.cpu import tune_allocator
from seqnets.data import echo_streams
from seqnets.training import (
    NonFiniteError,
    accuracy,
    create_train_state,
    softmax_cross_entropy,
)
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows

NUM_CLASSES = 2


@dataclasses.dataclass(frozen=True)
class Config:
    """Echo a random binary stream with a recurrent network trained by truncated BPTT."""

    cell: Literal["elman", "lstm", "gru"] = "elman"
    """Recurrent cell (elman is the tutorial's tanh RNN)."""
    hidden_size: int = 4
    """State size per layer."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    series_length: int = 50_000
    """Bits in each epoch's series (before it is cut into rows)."""
    batch_size: int = 5
    """Rows (contiguous streams) the series is cut into."""
    window: int = 15
    """Steps per truncated-BPTT window (truncated_backprop_length)."""
    echo_step: int = 3
    """Delay of the echo in steps."""
    epochs: int = 100
    """Epochs, each on a fresh series, with the carry zeroed at its start."""
    learning_rate: float = 0.3
    """Adagrad learning rate."""
    carry: Literal["both", "keep", "reset"] = "both"
    """keep: carry the state from each window into the next; reset: zero it at every
    window; both: train both and report the comparison."""
    loop: Literal["fused", "python"] = "fused"
    """fused: one compiled lax.scan over each epoch's windows; python: one jitted call per
    window."""
    seed: int = 0
    """Seed of the parameters and of every series."""
    workdir: str = "runs/echo"
    """Output directory: metrics, figures, results."""
    overwrite: bool = False
    """Start afresh even if --workdir holds a run (the old one is moved aside)."""
    smoke: bool = False
    """A quick run: 5,000-bit series, 5 epochs (used by the tests)."""
    progress: bool = True
    """Show a progress bar."""


SMOKE_SIZES = {"series_length": 5_000, "epochs": 5}


def effective(config: Config) -> Config:
    """The config with ``--smoke``'s sizes (each capped at its smoke value)."""
    return reporting.effective(config, SMOKE_SIZES)


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any training."""
    config = effective(config)
    make_model(config)  # hidden size, layers
    cli.check_at_least(config, 1, "series_length", "batch_size", "window", "echo_step", "epochs")
    cli.check_positive(config, "learning_rate")
    series(config, [config.seed, 0])  # the rows must divide and hold a window
    return config


def make_model(config: Config) -> sn.Stack:
    return sn.stack(models.CELLS[config.cell](config.hidden_size), num_layers=config.num_layers)


def init_params(model: sn.Stack, key: jax.Array) -> dict:
    """Recurrent layers for 1-bit inputs, and a linear head ``(output_size, 2)``."""
    return models.init_params(model, key, 1, NUM_CLASSES)


def make_loss_fn(model: sn.Stack):
    """The TBPTT loss: ``(params, carry, (x, y), key) -> (loss, (carry, metrics))``."""

    def loss_fn(params, carry, batch, key):
        del key
        x, y = batch  # (batch, window) bits
        carry, ys = model.apply(params["rnn"], x[..., None].astype(jnp.float32), carry=carry)
        logits = models.head(params, ys)  # (batch, window, 2)
        return softmax_cross_entropy(logits, y), (
            carry, {"accuracy": accuracy(logits, y), "predictions": jnp.argmax(logits, -1)}
        )

    return loss_fn


def series(config: Config, seed) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's rows, trimmed to whole windows as the tutorial does."""
    x, y = echo_streams(seed, series_length=config.series_length,
                        batch_size=config.batch_size, echo_step=config.echo_step)
    usable = x.shape[1] - x.shape[1] % config.window
    if usable == 0:
        raise ValueError(
            f"rows of {x.shape[1]} steps are shorter than one window of {config.window}: "
            "raise --series-length or lower --window / --batch-size."
        )
    return x[:, :usable], y[:, :usable]


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
    workdir = reporting.prepare_workdir(workdir, dataclasses.asdict(config), resume=False,
                                        overwrite=config.overwrite)
    modes = ["keep", "reset"] if config.carry == "both" else [config.carry]
    log = reporting.MetricsLog(workdir, keep_until_step=None)
    results = {"config": dataclasses.asdict(config), "runs": {}}
    for mode in modes:
        params, window_losses, records, seconds = train(config, mode == "keep", config.progress)
        for record in records:
            log.write({"carry": mode, **record})
        evaluation = evaluate(config, params, mode == "keep")
        reporting.plot_windows(
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


def main(args: list[str] | None = None) -> None:
    """The command line: ``error: <message>`` and exit code 2 for a bad config."""
    # No checkpoints to save: SIGTERM and SIGINT end the run as usual.
    cli.run(Config, validate, train_and_evaluate, args, saves_on_signal=False)


if __name__ == "__main__":
    tune_allocator()
    main()
