"""Checkpoints of a `TrainState` with orbax: save every N steps, keep the last K, resume.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed in the middle of a save leaves the previous checkpoints intact.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from seqnets.training.state import TrainState


def _to_saveable(state: TrainState) -> dict[str, Any]:
    # Typed PRNG keys are not arrays orbax can write; their raw uint32 data is.
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "step": state.step,
        "key_data": jax.random.key_data(state.key),
    }


class Checkpointer:
    """Saves and restores `TrainState`s under ``directory``.

    Args:
      directory: where checkpoints go, one sub-directory per saved step.
      save_every: save when ``step % save_every == 0`` (and always when ``force=True``).
      keep: how many of the most recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int = 3):
        if save_every < 1 or keep < 1:
            raise ValueError(f"save_every and keep must be >= 1; got {save_every}, {keep}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.save_every = save_every
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, state: TrainState, *, force: bool = False) -> bool:
        """Saves ``state`` if its step is due (or ``force``); returns whether it saved."""
        step = int(state.step)
        if not force and step % self.save_every != 0:
            return False
        if step in self.manager.all_steps():
            return False
        saved = self.manager.save(
            step, args=ocp.args.StandardSave(_to_saveable(state)), force=True
        )
        self.manager.wait_until_finished()
        return bool(saved)

    def restore(self, like: TrainState, step: int | None = None) -> TrainState:
        """Restores the checkpoint at ``step`` (default: the latest) into ``like``'s structure.

        Raises:
          FileNotFoundError: when the directory holds no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}.")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), _to_saveable(like)
        )
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        key = jax.random.wrap_key_data(
            np.asarray(restored["key_data"]), impl=jax.random.key_impl(like.key)
        )
        return TrainState(restored["params"], restored["opt_state"], restored["step"], key)

    def close(self) -> None:
        self.manager.close()
