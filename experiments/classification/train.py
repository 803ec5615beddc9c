"""The classification trainer: `train_and_evaluate` trains a `Task` on its `Data`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from tqdm import tqdm

from experiments import cli, reporting, rundir
from experiments.classification.checkpoints import (
    add_metrics,
    restore,
    save,
    saved_tree,
    stop,
    zero_sums,
)
from experiments.classification.configs import TrainConfig
from seqnets.parallel import data_mesh, make_shard_map_train_step, replicate, shard_batch
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


class Data(NamedTuple):
    """A data set in host memory; the first axis of every array is the example.

    Attributes:
      train: ``(inputs, labels)``, or ``(inputs, labels, mask)``: only the positions where
        ``mask`` (the shape of ``labels``, e.g. ``(examples, time)``) is not 0 count in the
        loss and the accuracy (token classification with a loss on some positions only),
        each weighted by its mask value. A training step's loss is its batch's masked
        mean (on several devices, the mean of each device's: equal when every example
        has as many masked positions, as MQAR's queries); the test figures weigh each
        batch by its mask's sum, so they are the masked mean over the whole test set.
      test: the same for evaluation.
      source: where the data came from (``results.json``'s ``data_source``).
      augment: ``(inputs, rng) -> inputs``, applied to each training batch, or None.
        ``rng`` is drawn from (seed, epoch, batch), so a resumed run redraws the same.
    """

    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    source: str
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None


class Task(NamedTuple):
    """What an experiment decides; `train_and_evaluate` does the rest.

    Attributes:
      init_params: ``key -> params``.
      logits: ``(params, inputs, key or None) -> logits (..., classes)`` over the labels'
        shape; the key (training steps only) is for dropout.
      load_data: ``() -> Data``, called once the options are checked, before the workdir
        changes.
      title: the learning curve's title.
    """

    init_params: Callable[[jax.Array], Any]
    logits: Callable[[Any, jax.Array, jax.Array | None], jax.Array]
    load_data: Callable[[], Data]
    title: str


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> float | optax.Schedule:
    """``--learning-rate`` as ``--schedule`` makes it over all steps: a number (constant),
    or the optax schedule of each step."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(config.learning_rate, total)
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, steps_per_epoch, max(total, steps_per_epoch + 1)
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam at `learning_rate`, after clipping (``--clip-norm``), under `skip_nonfinite`."""
    adam = optax.adam(learning_rate(config, steps_per_epoch))
    if config.clip_norm is not None:
        adam = optax.chain(optax.clip_by_global_norm(config.clip_norm), adam)
    return skip_nonfinite(adam)


def _loss_and_metrics(task: Task, params, batch, key):
    inputs, labels, *mask = batch
    logits = task.logits(params, inputs, key)
    mask = mask[0] if mask else None
    return softmax_cross_entropy(logits, labels, mask), accuracy(logits, labels, mask)


def make_steps(task: Task, optimizer: optax.GradientTransformation, mesh):
    """The jitted ``train_step(state, batch) -> (state, metrics)`` (data parallel over
    ``mesh``) and ``eval_step(params, batch) -> {"loss", "accuracy"}``."""

    def loss_fn(params, batch, key):
        loss, acc = _loss_and_metrics(task, params, batch, key)
        return loss, {"accuracy": acc}

    def metrics_fn(params, batch):
        loss, acc = _loss_and_metrics(task, params, batch, None)
        return {"loss": loss, "accuracy": acc}

    if mesh.size > 1:
        train_step = make_shard_map_train_step(loss_fn, optimizer, mesh)
    else:
        train_step = make_train_step(loss_fn, optimizer)
    return train_step, make_eval_step(metrics_fn)


def epoch_batches(config: TrainConfig, data: Data, data_key: jax.Array, epoch: int,
                  first: int = 0) -> Iterator[tuple[np.ndarray, ...]]:
    """The batches of ``epoch`` from batch ``first`` on, shuffled (and augmented).

    Order and augmentation are functions of (seed, epoch, batch): a resumed run redraws them."""
    examples = len(data.train[0])
    order = epoch_permutation(data_key, epoch, examples)
    for b in range(first, num_batches(examples, config.batch_size)):
        idx = order[b * config.batch_size : (b + 1) * config.batch_size]
        inputs, *rest = (a[idx] for a in data.train)
        if data.augment is not None:
            inputs = data.augment(inputs, np.random.default_rng([config.seed, epoch, b]))
        yield (inputs, *rest)


def evaluate(eval_step, params, arrays: tuple[np.ndarray, ...], mesh,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean loss and accuracy over all of ``arrays`` (``(inputs, labels[, mask])``), in
    batches (the last one may be short), each weighted by its examples (or its mask's sum,
    the weight of its mean)."""
    loss_sum, correct, total = 0.0, 0.0, 0.0
    for start in range(0, len(arrays[0]), batch_size):
        batch = tuple(a[start : start + batch_size] for a in arrays)
        # A short last batch that does not divide: every device evaluates all of it.
        place = shard_batch if len(batch[0]) % mesh.size == 0 else replicate
        metrics = jax.device_get(eval_step(params, place(batch, mesh)))
        weight = float(np.sum(batch[2], dtype=np.float64)) if len(batch) > 2 else len(batch[0])
        loss_sum += float(metrics["loss"]) * weight
        correct += float(metrics["accuracy"]) * weight
        total += weight
    return loss_sum / total, correct / total


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


def train_and_evaluate(config: TrainConfig, workdir: str | Path, task: Task) -> dict:
    """Trains ``task`` as ``config`` says, evaluates on the test set every epoch, writes the
    outputs in ``workdir`` and returns the results (``results.json``).

    ``config`` is checked already (the experiment's ``validate``). Holds the workdir's lock
    for the whole run (re-entrant: the command line holds it already).
    """
    with rundir.locked(workdir):
        start_time = time.perf_counter()
        data = task.load_data()
        path = rundir.prepare_workdir(workdir, dataclasses.asdict(config),
                                       resume=config.resume, overwrite=config.overwrite)
        results = _train(config, path, task, data)
        results["wall_seconds"] = time.perf_counter() - start_time
        reporting.write_results(path, results)
        print(f"test accuracy {results['test_accuracy']:.4f} on {results['test_examples']} "
              f"examples; wall time {results['wall_seconds']:.1f} s; outputs in {path}")
        return results


def _train(config: TrainConfig, path: Path, task: Task, data: Data) -> dict:
    mesh = data_mesh(config.devices, jax.local_devices())
    steps_per_epoch = num_batches(len(data.train[0]), config.batch_size)
    optimizer = make_optimizer(config, steps_per_epoch)
    init_key, data_key, step_key = jax.random.split(jax.random.key(config.seed), 3)
    state = create_train_state(task.init_params(init_key), optimizer, step_key)
    train_step, eval_step = make_steps(task, optimizer, mesh)
    checkpointer = Checkpointer(path / rundir.CHECKPOINT_DIR, save_every=config.checkpoint_every,
                                keep=config.keep_checkpoints, config=dataclasses.asdict(config))
    saved = restore(checkpointer, saved_tree(state)) if config.resume else saved_tree(state)
    state, sums = replicate((saved["state"], saved["epoch"]), mesh)
    step = int(state.step)
    log = reporting.MetricsLog(path, keep_until_step=step)

    for epoch in range(step // steps_per_epoch, config.epochs):
        first = step % steps_per_epoch
        if first == 0:
            sums = replicate(zero_sums(), mesh)
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress, leave=False, unit="step")
        epoch_start = time.perf_counter()
        batches = epoch_batches(config, data, data_key, epoch, first)
        step = (epoch + 1) * steps_per_epoch
        state, sums, stopped = train_epoch(train_step, state, sums, batches, mesh, checkpointer,
                                           bar, epoch_end=step)
        bar.close()
        if stopped:
            raise stop(checkpointer, state, sums)
        epoch_time = time.perf_counter() - epoch_start
        check_finite(state)  # names the first skipped step, if any
        train = {k: float(v) / steps_per_epoch for k, v in jax.device_get(sums).items()}
        test_loss, test_acc = evaluate(eval_step, state.params, data.test, mesh)
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
            raise stop(checkpointer, state, sums)
    save(checkpointer, state, sums, force=True)
    checkpointer.close()

    last = log.records[-1] if log.records else None
    if last is not None and last["epoch"] == config.epochs:  # the final parameters' figures
        test_loss, test_acc = last["test_loss"], last["test_accuracy"]
    else:
        test_loss, test_acc = evaluate(eval_step, state.params, data.test, mesh)
    reporting.plot_learning_curve(log.records, path / "learning_curve.png", task.title)
    return {
        "test_accuracy": test_acc, "test_loss": test_loss,
        "test_examples": len(data.test[0]), "train_examples": len(data.train[0]),
        "steps": step, "total_steps": config.epochs * steps_per_epoch,
        "data_source": data.source,
        "device": str(jax.devices()[0].device_kind), "devices": mesh.size,
        "jax_version": jax.__version__,
    }
