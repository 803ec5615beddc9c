"""What the classification trainer's checkpoints hold: the train state and the running
sums of the epoch in progress, so that a resumed epoch's train figures cover all its steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments import cli
from seqnets.training import Checkpointer, check_finite

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


def stop(checkpointer: Checkpointer, state, sums: dict) -> cli.InterruptedRun:
    """Saves where the run stands and closes the checkpointer; the error to raise."""
    save(checkpointer, state, sums, force=True)
    checkpointer.close()
    return cli.InterruptedRun(cli.stop_requested(), int(state.step), checkpointer.directory)
