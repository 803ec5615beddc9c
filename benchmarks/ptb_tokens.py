"""Tokens per second of the PTB word model's train step: seqnets against PyTorch and Flax.

    python -m benchmarks.ptb_tokens [--config small] [--windows 20] [--rounds 4]

Workload: Zaremba et al.'s model at ``--config``'s sizes (`experiments.ptb.PRESETS`):
an embedding, a 2-layer LSTM, a 10,000-way softmax; batch 20, windows of ``num_steps``
tokens of the real training text, SGD at learning rate 1 with the gradient clipped to
the config's global norm, the carry handed from window to window with the gradient cut.
Dropout is off in every competitor (``small`` has none; for ``medium`` and ``large`` this
times the arithmetic they share). Competitors, timed interleaved in one run
(`benchmarks.harness.time_rounds`), each call training on the same ``--windows`` windows:

* ``seqnets_fused``: `experiments.ptb`'s own step, the fused TBPTT epoch
  (`seqnets.training.tbptt.make_epoch_step`), one compiled call for all windows;
* ``seqnets_window``: the same loss, one jitted `make_window_step` call per window;
* ``torch``: ``nn.Embedding``, ``nn.LSTM(num_layers=2)``, ``nn.Linear``, SGD and
  ``clip_grad_norm_``, the hidden state detached between windows, as PyTorch's
  ``examples/word_language_model/main.py`` trains;
* ``flax``: ``nn.Embed``, two ``nn.RNN(nn.OptimizedLSTMCell)`` layers and ``nn.Dense``,
  optax's ``chain(clip_by_global_norm, sgd)``, one jitted step per window.

Prints tokens/s for each, the ratios of seqnets' fused step to the others, and the
projected training time of the config's epochs at each speed.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.harness import Competitor, Goal, Workload, measure
from benchmarks.runners import JaxEpoch, JaxWindowLoop, xla_peak_memory
from experiments import ptb
from seqnets.cpu import tune_allocator
from seqnets.data import lm_streams, load_ptb
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = [Goal("PTB", "seqnets_fused", "torch", 1.2), Goal("PTB", "seqnets_fused", "flax", 1.2)]


def config_of(w: Workload) -> ptb.Config:
    """The `experiments.ptb` config whose model has the workload's sizes, dropout off."""
    for name, preset in ptb.PRESETS.items():
        if preset["hidden_size"] == w.hidden and preset["num_steps"] == w.time:
            return ptb.effective(ptb.Config(config=name, dropout=0.0))
    raise ValueError(f"no PTB config has hidden size {w.hidden} and {w.time} steps.")


@functools.lru_cache(maxsize=2)
def text_windows(batch: int, steps: int, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``windows`` windows of the training text's streams: ``(windows, batch, steps)``
    int32 inputs and targets."""
    train = load_ptb().train[: batch * (steps * windows + 1)]  # each stream needs one extra target
    x, y = lm_streams(train, batch, steps)
    return tuple(np.asarray(a) for a in split_windows((x, y), steps))  # type: ignore[return-value]


def seqnets_ptb(w: Workload, fused: bool) -> JaxEpoch | JaxWindowLoop:
    """`experiments.ptb`'s model, loss and optimizer; fused (one call) or one call per window."""
    config = config_of(w)
    model = ptb.make_model(config)
    optimizer = ptb.make_optimizer(config, windows_per_epoch=w.windows)
    loss_fn = ptb.make_loss_fn(config, model)
    state = ptb.initial_state(config, model, optimizer)
    carry = model.initial_carry(w.batch)
    windows = tuple(map(jnp.asarray, text_windows(w.batch, w.time, w.windows)))
    if fused:
        return JaxEpoch(make_epoch_step(loss_fn, optimizer), state, carry, windows)
    per_window = [tuple(a[k] for a in windows) for k in range(w.windows)]
    return JaxWindowLoop(make_window_step(loss_fn, optimizer), state, carry, per_window)


class Torch:
    """PyTorch's word_language_model set-up: embedding, 2-layer ``nn.LSTM``, linear decoder.

    It does not measure its memory (this benchmark reports speed only).
    """

    def __init__(self, w: Workload, threads: int):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        config = config_of(w)
        scale = config.init_scale
        self.embedding = torch.nn.Embedding(ptb.VOCAB_SIZE, w.hidden)
        self.lstm = torch.nn.LSTM(w.hidden, w.hidden, num_layers=config.num_layers)
        self.decoder = torch.nn.Linear(w.hidden, ptb.VOCAB_SIZE)
        self.parameters = [*self.embedding.parameters(), *self.lstm.parameters(),
                           *self.decoder.parameters()]
        with torch.no_grad():
            for p in self.parameters:
                p.uniform_(-scale, scale)
        self.clip = config.clip_norm
        self.optimizer = torch.optim.SGD(self.parameters, lr=config.learning_rate)
        x, y = text_windows(w.batch, w.time, w.windows)
        # Time-major, as nn.LSTM's default layout and the example's batchify.
        self.x = torch.from_numpy(x).long().transpose(1, 2).contiguous()
        self.y = torch.from_numpy(y).long().transpose(1, 2).contiguous()
        zeros = torch.zeros(config.num_layers, w.batch, w.hidden)
        self.hidden = (zeros, zeros.clone())

    def __call__(self) -> None:
        import torch

        for x, y in zip(self.x, self.y, strict=True):
            self.hidden = tuple(h.detach() for h in self.hidden)
            self.optimizer.zero_grad()
            output, self.hidden = self.lstm(self.embedding(x), self.hidden)
            logits = self.decoder(output)
            # Summed over the window's steps, averaged over the batch: experiments.ptb's loss.
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, ptb.VOCAB_SIZE), y.reshape(-1)) * x.shape[0]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip)
            self.optimizer.step()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return self.x[0].T.numpy(), self.y[0].T.numpy()


class Flax:
    """``nn.Embed``, two ``nn.RNN(nn.OptimizedLSTMCell)`` layers carrying their state,
    ``nn.Dense``; optax clipping and SGD; one jitted step per window."""

    def __init__(self, w: Workload):
        import flax.linen as nn

        config = config_of(w)
        init = ptb.uniform(config.init_scale)
        cell = functools.partial(nn.OptimizedLSTMCell, w.hidden, kernel_init=init,
                                 recurrent_kernel_init=init)
        layers = config.num_layers

        class Model(nn.Module):
            @nn.compact
            def __call__(self, carry, x):
                h = nn.Embed(ptb.VOCAB_SIZE, w.hidden, embedding_init=init)(x)
                new_carry = []
                for layer in range(layers):
                    c, h = nn.RNN(cell(), return_carry=True)(h, initial_carry=carry[layer])
                    new_carry.append(c)
                return new_carry, nn.Dense(ptb.VOCAB_SIZE, kernel_init=init)(h)

        model = Model()
        x, y = text_windows(w.batch, w.time, w.windows)
        self.windows = [(jnp.asarray(a), jnp.asarray(b)) for a, b in zip(x, y, strict=True)]
        zeros = jnp.zeros((w.batch, w.hidden))
        self.carry = [(zeros, zeros)] * layers
        self.params = model.init(jax.random.key(0), self.carry, self.windows[0][0])
        optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm),
                                optax.sgd(config.learning_rate))
        self.opt_state = optimizer.init(self.params)

        def loss_fn(params, carry, x, y):
            carry, logits = model.apply(params, carry, x)
            nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return jnp.sum(jnp.mean(nll, axis=0)), carry

        @jax.jit
        def step(params, opt_state, carry, x, y):
            grads, carry = jax.grad(loss_fn, has_aux=True)(params, carry, x, y)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, jax.lax.stop_gradient(carry)

        self.step = step

    def __call__(self) -> None:
        for x, y in self.windows:
            self.params, self.opt_state, self.carry = self.step(self.params, self.opt_state,
                                                                self.carry, x, y)
        jax.block_until_ready(self.params)

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.windows[0])

    def peak_memory(self) -> tuple[int | None, str]:
        peak, how = xla_peak_memory(self.step, self.params, self.opt_state, self.carry,
                                    *self.windows[0])
        return peak, f"{how}, one window's call"


def competitors(torch_threads: int) -> list[Competitor]:
    return [
        Competitor("seqnets_fused", "seqnets fused TBPTT epoch (experiments.ptb)",
                   functools.partial(seqnets_ptb, fused=True)),
        Competitor("seqnets_window", "seqnets per-window jit",
                   functools.partial(seqnets_ptb, fused=False)),
        Competitor("torch", "PyTorch nn.LSTM word model", functools.partial(Torch,
                   threads=torch_threads), requires="torch"),
        Competitor("flax", "Flax nn.RNN(OptimizedLSTMCell)", Flax, requires="flax"),
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="small", choices=sorted(ptb.PRESETS))
    parser.add_argument("--windows", type=int, default=20, help="windows per timed call")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=2, help="timed calls per competitor/round")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON report (default: benchmarks/results/ptb_tokens_CONFIG.json)")
    args = parser.parse_args(argv)
    preset = ptb.PRESETS[args.config]
    w = Workload("PTB", ptb.BATCH_SIZE, preset["num_steps"], preset["hidden_size"],
                 preset["hidden_size"], unit="windows/s", windows=args.windows)
    load_start = os.getloadavg()[0]
    rows, skipped = measure(w, competitors(args.torch_threads), args.rounds, args.steps)
    tokens_per_window = w.batch * w.time
    epoch_tokens = (len(load_ptb().train) - 1) // (w.batch * w.time) * w.batch * w.time
    report = {"config": args.config, "date": datetime.date.today().isoformat(),
              "load_start": load_start, "load_end": os.getloadavg()[0], "jax": jax.__version__,
              "device": jax.devices()[0].device_kind, "windows_per_call": args.windows,
              "rounds": args.rounds, "skipped": skipped, "rows": {}, "ratios": {}}
    print(f"PTB {args.config}: batch {w.batch}, {w.time} steps, 2 x LSTM {w.hidden}, "
          f"{args.windows} windows per call, {args.rounds} rounds; jax {jax.__version__}; "
          f"load average {report['load_start']:.2f} at the start, {report['load_end']:.2f} "
          f"at the end{' (above 2 on 2 cores: not a quiet run)' if report['load_end'] > 2 else ''}")
    for cid, row in rows.items():
        tokens = row.per_second * tokens_per_window
        hours = preset["epochs"] * epoch_tokens / tokens / 3600
        report["rows"][cid] = {"label": row.label, "tokens_per_second": tokens,
                               "median_call_seconds": row.median_call_seconds,
                               "projected_training_hours": hours}
        print(f"  {row.label:45s} {tokens:9,.0f} tokens/s   {preset['epochs']} epochs: "
              f"{hours * 60:6.1f} min")
    for goal in GOALS:
        if goal.ours in rows and goal.theirs in rows:
            ratio = rows[goal.ours].per_second / rows[goal.theirs].per_second
            report["ratios"][f"{goal.ours}/{goal.theirs}"] = ratio
            verdict = "met" if ratio >= goal.least else "not met"
            print(f"  {goal.ours} / {goal.theirs}: {ratio:.2f}x (goal {goal.least}x: {verdict})")
    for cid, why in skipped.items():
        print(f"  skipped {cid}: {why}")
    out = args.out or RESULTS / f"ptb_tokens_{args.config}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    tune_allocator()
    main()
