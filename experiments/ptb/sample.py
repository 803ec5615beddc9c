"""Words from a trained ``ptb`` run: ``python -m experiments.ptb --sample N``."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import seqnets as sn
from experiments import cli, rundir
from experiments.ptb.configs import Config
from experiments.ptb.models import logits_fn, make_model
from experiments.ptb.train import initial_state, make_optimizer, saved_tree
from seqnets.data import load_ptb
from seqnets.data.ptb import EOS, decode
from seqnets.training import Checkpointer
from seqnets.training.checkpoint import saved_configs


def sample_words(config: Config, params: dict, start: int, num_words: int, temperature: float,
                 seed: int) -> np.ndarray:
    """``num_words`` token ids drawn one at a time with the stack's one-step ``step``.

    The carry starts from zeros and the first input is ``start``; each drawn word is the
    next input. Word ``i`` is drawn from ``softmax(logits / temperature)`` with the key
    ``fold_in(key(seed), i)``: the same seed gives the same words.
    """
    cli.check_value("temperature", temperature, cli.FinitePositive())
    tokens = _generate(make_model(config), num_words, params, jnp.int32(start),
                       jnp.float32(temperature), jax.random.key(seed))
    return np.asarray(tokens)


# The model and the length are static: jit compiles once per model configuration (models
# of equal configs are equal) and length, and reuses it.
@functools.partial(jax.jit, static_argnames=("model", "num_words"))
def _generate(model: sn.Stack, num_words: int, params, start, temperature, key) -> jax.Array:
    def body(state, i):
        carry, token = state
        x = params["embedding"][token]  # (1, H)
        new_carry, x = model.step(params["rnn"], carry, x)
        logits = logits_fn(params, x) / temperature
        token = jax.random.categorical(jax.random.fold_in(key, i), logits)  # (1,)
        return (new_carry, token), token[0]

    start_token = jnp.full((1,), start, jnp.int32)
    _, tokens = jax.lax.scan(body, (model.initial_carry(1), start_token), jnp.arange(num_words))
    return tokens


def sample_from_run(workdir: str | Path, num_words: int, temperature: float,
                    seed: int) -> str:
    """Text of ``num_words`` words sampled from the last checkpoint in ``workdir``.

    The model's options come from ``config.json``, or, when it is missing, from the copy
    saved with the newest checkpoint.
    """
    path = Path(workdir)
    saved = path / rundir.CONFIG_FILE
    copies = [] if saved.exists() else [
        c for c in saved_configs(path / rundir.CHECKPOINT_DIR).values() if c]
    if not saved.exists() and not copies:
        raise FileNotFoundError(f"{path} holds no run ({saved} is missing); train first with "
                                f"python -m experiments.ptb --workdir {path}.")
    config = Config(**(rundir.read_config(saved) if saved.exists() else copies[-1]))
    data = load_ptb(config.source, config.data_dir)
    model = make_model(config)
    checkpointer = Checkpointer(path / rundir.CHECKPOINT_DIR, save_every=1)
    like = initial_state(config, model, make_optimizer(config, 1))
    state = checkpointer.restore(saved_tree(config, model, like))["state"]
    checkpointer.close()
    tokens = sample_words(config, state.params, data.vocab.index(EOS), num_words,
                          temperature, seed)
    return decode(tokens, data.vocab)
