"""Training and evaluation of ``ptb``: the paper's loss, SGD schedule and batch-1 test.

`train_and_evaluate` reads each epoch's windows through
`seqnets.training.tbptt.make_epoch_step`, one compiled ``lax.scan`` per call of
``--windows-per-call`` windows, the carry crossing every window with the gradient cut and
starting from zeros at each epoch. A checkpoint ends every epoch; one saved on a signal,
mid-epoch, also holds the carry and the epoch's summed loss, so ``--resume`` continues the
epoch bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import seqnets as sn
from experiments import cli, reporting, rundir
from experiments.ptb.configs import PAPER_TEST_PPL, Config, validate
from experiments.ptb.input_pipeline import BATCH_SIZE, load_data, train_windows
from experiments.ptb.models import forward, init_params, make_model, token_nll
from seqnets.training import (
    Checkpointer,
    NonFiniteError,
    TrainState,
    check_finite,
    create_train_state,
    skip_nonfinite,
)
from seqnets.training.tbptt import make_epoch_step

MAX_NLL = 709.0  # math.exp overflows a float above about 709.78


def perplexity(nll: float) -> float:
    """``exp(nll)``, or infinity where that overflows a float (a diverged run's loss)."""
    return math.exp(nll) if nll < MAX_NLL else math.inf


def make_loss_fn(config: Config, model: sn.Stack):
    """The TBPTT loss: ``(params, carry, (x, y), key) -> (loss, (carry, {"nll": mean}))``.

    ``loss`` is the window's cross-entropy summed over steps, averaged over the batch.
    """
    train_key = config.dropout > 0 or config.recurrent_dropout > 0

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, logits = forward(config, model, params, carry, x, key if train_key else None)
        nll = token_nll(logits, y)  # (batch, num_steps)
        return jnp.sum(jnp.mean(nll, axis=0)), (carry, {"nll": jnp.mean(nll)})

    return loss_fn


def make_schedule(config: Config, windows_per_epoch: int) -> optax.Schedule:
    """The paper's learning rate of each update: ``--learning-rate``, times ``--lr-decay``
    once per epoch after ``--max-epoch`` epochs (float32, as SGD applies it)."""

    def schedule(count):
        epoch = count // windows_per_epoch  # 0-based epoch of this update
        exponent = jnp.maximum(epoch + 1 - config.max_epoch, 0).astype(jnp.float32)
        return config.learning_rate * jnp.power(jnp.float32(config.lr_decay), exponent)

    return schedule


def make_optimizer(config: Config, windows_per_epoch: int) -> optax.GradientTransformation:
    """SGD on `make_schedule` after the paper's clipping, guarded against non-finite updates."""
    return skip_nonfinite(optax.chain(optax.clip_by_global_norm(config.clip_norm),
                                      optax.sgd(make_schedule(config, windows_per_epoch))))


def make_eval_fn(config: Config, model: sn.Stack):
    """Jitted ``(params, carry, x, y, weight) -> (carry, summed nll)`` on ``(1, eval_window)``."""

    @jax.jit
    def eval_window(params, carry, x, y, weight):
        carry, logits = forward(config, model, params, carry, x, None)
        return carry, jnp.sum(token_nll(logits, y) * weight)

    return eval_window


def evaluate(eval_fn, model: sn.Stack, params: dict, ids: np.ndarray, window: int) -> float:
    """Perplexity of ``ids`` read as one stream (batch 1), the carry crossing the whole split,
    as the tutorial's test model. Every token but the first is predicted exactly once; the
    last window is padded and its padding weighs zero."""
    x, y = ids[:-1], ids[1:]
    count = len(y)
    padded = -(-count // window) * window
    weight = np.zeros(padded, np.float32)
    weight[:count] = 1.0
    x, y = (np.pad(a, (0, padded - count)) for a in (x, y))
    carry = model.initial_carry(1)
    total = 0.0
    for start in range(0, padded, window):
        s = slice(start, start + window)
        carry, nll = eval_fn(params, carry, x[None, s], y[None, s], weight[None, s])
        total += float(nll)
    return perplexity(total / count)


def initial_state(config: Config, model: sn.Stack, optimizer) -> TrainState:
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    return create_train_state(init_params(config, model, init_key), optimizer, step_key)


def saved_tree(config: Config, model: sn.Stack, state: TrainState, carry=None,
               nll_sum=None) -> dict:
    """What a checkpoint holds: the state, and the epoch in progress (its carry and summed
    window losses; restore into ``saved_tree(config, model, like_state)``)."""
    del config  # the batch is the paper's (BATCH_SIZE)
    return {"state": state, "epoch": {
        "carry": model.initial_carry(BATCH_SIZE) if carry is None else carry,
        "nll_sum": jnp.zeros((), jnp.float32) if nll_sum is None else nll_sum}}


def _diverged(config: Config, epoch: int, train_nll: float, checkpointer: Checkpointer):
    kept = checkpointer.all_steps()
    return NonFiniteError(
        f"epoch {epoch + 1}: the mean train loss is {train_nll:.4g} nats per word, whose "
        f"perplexity overflows: the run diverged. Lower --learning-rate "
        f"({config.learning_rate:g}) or --clip-norm ({config.clip_norm:g}). "
        + (f"The checkpoints of steps {', '.join(map(str, kept))} are intact."
           if kept else "No checkpoint was written.")
    )


def train_and_evaluate(config: Config, workdir: str | Path) -> dict:
    """Trains, reports the valid perplexity every epoch, tests, writes the outputs in
    ``workdir`` and returns the results (``results.json``)."""
    with rundir.locked(workdir):  # already held when called from the command line
        start_time = time.perf_counter()
        config = validate(config)
        data, train_ids, valid_ids, test_ids = load_data(config)
        path = rundir.prepare_workdir(workdir, dataclasses.asdict(config),
                                       resume=config.resume, overwrite=config.overwrite)
        windows = train_windows(config, train_ids)  # (n, batch, num_steps) each
        windows_per_epoch = windows[0].shape[0]
        model = make_model(config)
        optimizer = make_optimizer(config, windows_per_epoch)
        epoch_step = make_epoch_step(make_loss_fn(config, model), optimizer)
        eval_fn = make_eval_fn(config, model)
        schedule = make_schedule(config, windows_per_epoch)

        checkpointer = Checkpointer(path / rundir.CHECKPOINT_DIR, save_every=windows_per_epoch,
                                    keep=2, config=dataclasses.asdict(config))
        saved = saved_tree(config, model, initial_state(config, model, optimizer))
        if config.resume and checkpointer.latest_step() is not None:
            saved = checkpointer.restore(saved)
            print(f"resumed from step {int(saved['state'].step)} in {checkpointer.directory}")
        state, carry, nll_sum = saved["state"], saved["epoch"]["carry"], saved["epoch"]["nll_sum"]
        log = reporting.MetricsLog(path, keep_until_step=int(state.step))
        chunk = config.windows_per_call

        def save() -> None:
            check_finite(state)  # a checkpoint never holds a state that skipped an update
            checkpointer.save(saved_tree(config, model, state, carry, nll_sum),
                              step=int(state.step), force=True)

        def stop() -> cli.InterruptedRun:
            checkpointer.close()
            return cli.InterruptedRun(cli.stop_requested(), int(state.step), checkpointer.directory)

        for epoch in range(int(state.step) // windows_per_epoch, config.epochs):
            first = int(state.step) - epoch * windows_per_epoch  # > 0 only when resumed mid-epoch
            if first == 0:  # each epoch starts from zeros (the tutorial's run_epoch)
                carry, nll_sum = model.initial_carry(BATCH_SIZE), jnp.zeros((), jnp.float32)
            bar = tqdm(total=windows_per_epoch, initial=first, leave=False, unit="window",
                       desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress)
            epoch_start = time.perf_counter()
            for begin in range(first, windows_per_epoch, chunk):
                part = jax.tree.map(lambda w, b=begin: w[b : b + chunk], windows)
                state, carry, metrics = epoch_step(state, carry, part)
                # One float32 add per call, in order (no sync): a resumed epoch ends alike.
                nll_sum = nll_sum + jnp.sum(metrics["nll"])
                bar.update(part[0].shape[0])
                if cli.stop_requested() is not None and begin + chunk < windows_per_epoch:
                    bar.close()
                    save()
                    raise stop()
            bar.close()
            epoch_seconds = time.perf_counter() - epoch_start
            check_finite(state)  # before any figure of a run that skipped an update
            train_nll = float(nll_sum) / windows_per_epoch
            if not train_nll < MAX_NLL:  # every update finite, but the run has diverged
                raise _diverged(config, epoch, train_nll, checkpointer)
            eval_start = time.perf_counter()
            valid_ppl = evaluate(eval_fn, model, state.params, valid_ids, config.eval_window)
            record = {
                "epoch": epoch + 1,
                "step": int(state.step),
                # The rate of the epoch's updates, from the schedule SGD applied.
                "learning_rate": float(schedule(epoch * windows_per_epoch)),
                "train_ppl": perplexity(train_nll),
                "valid_ppl": valid_ppl,
                "epoch_seconds": epoch_seconds,
                "tokens_per_second": (windows_per_epoch - first) * BATCH_SIZE * config.num_steps
                / epoch_seconds,
                "eval_seconds": time.perf_counter() - eval_start,
            }
            log.write(record)  # before the checkpoint of this step: a kill between loses nothing
            save()
            print(f"epoch {epoch + 1:3d}  lr {record['learning_rate']:.4g}  train ppl "
                  f"{record['train_ppl']:.2f}  valid ppl {valid_ppl:.2f}  ({epoch_seconds:.1f} s, "
                  f"{record['tokens_per_second']:.0f} tokens/s)", flush=True)
            if cli.stop_requested() is not None:
                raise stop()
        checkpointer.close()

        valid_ppl = evaluate(eval_fn, model, state.params, valid_ids, config.eval_window)
        test_ppl = evaluate(eval_fn, model, state.params, test_ids, config.eval_window)
        plot_perplexity(log.records, path / "perplexity.png", config)
        results = {
            "config": config.config, "test_ppl": test_ppl, "valid_ppl": valid_ppl,
            "paper_test_ppl": PAPER_TEST_PPL[config.config], "epochs": config.epochs,
            "steps": int(state.step), "train_tokens": len(train_ids),
            "valid_tokens": len(valid_ids), "test_tokens": len(test_ids),
            "wall_seconds": time.perf_counter() - start_time, "data_source": data.source,
            "device": str(jax.devices()[0].device_kind), "jax_version": jax.__version__,
        }
        reporting.write_results(path, results)
        print(f"test perplexity {test_ppl:.2f} (paper: {PAPER_TEST_PPL[config.config]}), valid "
              f"{valid_ppl:.2f}; wall time {results['wall_seconds']:.1f} s; outputs in {path}")
        return results


def plot_perplexity(records: list[dict], path: Path, config: Config) -> None:
    """Train and valid perplexity per epoch, and the paper's test perplexity."""
    plt = reporting.pyplot()
    epochs = [r["epoch"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_ppl"] for r in records], marker="o", label="train")
    ax.plot(epochs, [r["valid_ppl"] for r in records], marker="o", label="valid")
    ax.axhline(PAPER_TEST_PPL[config.config], color="grey", linestyle="--",
               label=f"paper's test ({PAPER_TEST_PPL[config.config]})")
    ax.set(xlabel="epoch", ylabel="perplexity", yscale="log",
           title=f"PTB {config.config}: {config.num_layers} x {config.cell} {config.hidden_size}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    reporting.save_figure(fig, path)
