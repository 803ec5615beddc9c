"""Checkpoints of a `TrainState` with orbax: save every N steps, keep the last K, resume.

What is saved is a `TrainState`, or any pytree of arrays and typed PRNG keys (a dict
holding a `TrainState` and what else a run needs to continue, such as an epoch's running
sums); it is restored into a tree of the same structure.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed in the middle of a save leaves the previous checkpoints intact. Before it starts
a save, the `Checkpointer` asks the operating system whether the directory can take the
checkpoint (a file can be created there, and the file system has room for the arrays'
bytes), so that a full disk, a read-only mount or a file in the way raise one
`CheckpointError` naming the reason (from ``errno``) before orbax starts any thread. A
write that fails inside orbax all the same is reported with the `OSError` behind it.

Integrity: once orbax has committed a checkpoint, a manifest of every file's size and
SHA-256 is written into it (`MANIFEST_FILE`). Restoring checks the files against the
manifest before orbax reads them, then the restored tree's structure, shapes and dtypes,
so that a truncated file, overwritten bytes and a flipped bit (which orbax itself reads
back without complaint, as other numbers) are caught, and the damaged file is named. A
checkpoint without a manifest (a save cut short between orbax's commit and the manifest:
only a second signal or a kill can do it) cannot be verified: it is moved aside like a
damaged one when an older checkpoint is intact, and restored with a warning when it is
the only one orbax can read whole (orbax's commit is atomic; the run is not lost).
`Checkpointer.restore` falls back from a damaged checkpoint to the newest intact one and
moves the damaged one aside (it never deletes a checkpoint), logging a warning for each
(logger ``seqnets.training.checkpoint``).

Each checkpoint can also carry the configuration of the run that wrote it (a JSON object,
``Checkpointer(config=...)``), in the same metadata and the same atomic commit as the
arrays, so that a resumed run can be compared with the run it continues even when the
files beside the checkpoints are lost (`saved_configs`). A `TrainState` whose parameters
are not all finite is never written (`NonFiniteError`).

The model itself can be saved beside the arrays too: ``Checkpointer(model=stack)`` writes
the cell's or stack's configuration (`seqnets.to_config`) into every checkpoint's metadata,
and `load_model` rebuilds the model and reads its parameters from the checkpoint folder
alone, with no code that knew the sizes. `Checkpointer.restore_params` reads only the
parameters of any checkpoint (a `TrainState`'s, whatever optimizer made it), for
inference or to start a new optimizer from them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from seqnets.cells.config import from_config, to_config
from seqnets.training.checkpoint_files import (
    MANIFEST_FILE,
    manifest_problems,
    os_error,
    refusal,
    write_manifest,
)
from seqnets.training.guard import NonFiniteError
from seqnets.training.state import TrainState

CONFIG_KEY = "seqnets_config"
MODEL_KEY = "seqnets_model"
# The field names a TrainState is saved under, at the top level or inside a saved tree.
_STATE_FIELDS = ({"params", "opt_state", "step", "key_data"}, {"params", "opt_state", "step", "key"})

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or no saved checkpoint could be restored."""


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: Any) -> Any:
    # Typed PRNG keys are not arrays orbax can write; their raw uint32 data is. A bare
    # TrainState keeps the layout seqnets has always written.
    if isinstance(tree, TrainState):
        return {
            "params": tree.params,
            "opt_state": tree.opt_state,
            "step": tree.step,
            "key_data": jax.random.key_data(tree.key),
        }
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saveable(like: Any, restored: Any) -> Any:
    """``restored`` (the saved arrays) in ``like``'s structure, its PRNG keys typed again."""
    wrap = lambda data, key: jax.random.wrap_key_data(  # noqa: E731
        np.asarray(data), impl=jax.random.key_impl(key))
    if isinstance(like, TrainState):
        return TrainState(restored["params"], restored["opt_state"], restored["step"],
                          wrap(restored["key_data"], like.key))
    return jax.tree.map(lambda key, data: wrap(data, key) if _is_key(key) else data,
                        like, restored)


def _step_of(tree: Any, step: int | None) -> int:
    if step is not None:
        return int(step)
    if isinstance(tree, TrainState):
        return int(tree.step)
    raise ValueError(
        "Checkpointer.save: a tree that is not a TrainState has no step of its own: pass "
        "step=..., e.g. ckpt.save(params, step=int(state.step), force=True) to save the "
        "parameters alone for inference (Checkpointer.restore_params or load_model read "
        "them back)."
    )


def _nonfinite_params(host_tree: Any) -> list[str]:
    """Paths of the non-finite parameters of every `TrainState` in ``host_tree``."""
    states = [s for s in jax.tree.leaves(host_tree, is_leaf=lambda s: isinstance(s, TrainState))
              if isinstance(s, TrainState)]
    bad = []
    for state in states:
        for path, value in jax.tree_util.tree_flatten_with_path(state.params)[0]:
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
                bad.append("params" + jax.tree_util.keystr(path))
    return bad


class Checkpointer:
    """Saves and restores `TrainState`s (or pytrees holding them) under ``directory``.

    Args:
      directory: where checkpoints go, one sub-directory per saved step.
      save_every: save when ``step % save_every == 0`` (and always when ``force=True``).
      keep: how many of the most recent checkpoints to keep.
      config: the configuration of the run, a JSON-serialisable mapping, saved with every
        checkpoint (`saved_config` reads it back); None saves none.
      model: the seqnets cell or stack whose parameters the checkpoints hold (alone, or
        as part of a larger tree such as ``{"rnn": ..., "head": ...}``); its configuration
        (`seqnets.to_config`) is saved with every checkpoint, so that `saved_model` and
        `load_model` rebuild it from the folder alone. None saves none.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int = 3,
                 config: Mapping[str, Any] | None = None, model: Any = None):
        if save_every < 1 or keep < 1:
            raise ValueError(f"save_every and keep must be >= 1; got {save_every}, {keep}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.save_every = save_every
        # A copy through JSON: what is compared later is what was written.
        self.config = None if config is None else json.loads(json.dumps(dict(config)))
        self.model = None if model is None else json.loads(json.dumps(to_config(model)))
        self.manager = ocp.CheckpointManager(
            self.directory,
            # Synchronous saves: a failed write surfaces here as one exception instead of
            # errors in orbax's background threads after the step has moved on.
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    @property
    def aside_directory(self) -> Path:
        """Where damaged checkpoints are moved: a sibling ``<directory>.corrupt``."""
        return Path(self.directory + ".corrupt")

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of all complete checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, state: Any, *, force: bool = False, step: int | None = None) -> bool:
        """Saves ``state`` if its step is due (or ``force``); returns whether it saved.

        Args:
          state: a `TrainState`, or any pytree of arrays and typed PRNG keys.
          force: save whatever the step.
          step: the step to save under; by default ``state.step`` (required when ``state``
            is not a `TrainState`).

        Raises:
          NonFiniteError: when a `TrainState` in ``state`` holds a NaN or an infinity in
            its parameters; nothing is written.
          CheckpointError: when the write fails (disk full, permission denied, read-only
            file system). The message names the step, the path and the OS reason; orbax's
            temporary folder is removed and earlier checkpoints are left as they were.
        """
        step = _step_of(state, step)
        if not force and step % self.save_every != 0:
            return False
        if step in self.manager.all_steps():
            return False
        host = jax.device_get(state)
        bad = _nonfinite_params(host)
        if bad:
            kept = self.all_steps()
            raise NonFiniteError(
                f"refusing to save step {step}: {', '.join(bad[:3])}"
                + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                + " hold NaN or infinite values. Nothing was written"
                + (f"; the checkpoints of steps {', '.join(map(str, kept))} are intact." if kept
                   else ".")
            )
        tree = _to_saveable(state)
        # Asked before orbax starts: a write that fails inside orbax fails in its worker
        # threads, which log the error, and tensorstore's other writes in flight then
        # call back into orbax's closed event loop ("Event loop is closed" tracebacks).
        refused = refusal(self.directory, sum(np.asarray(x).nbytes for x in jax.tree.leaves(
            _to_saveable(host))))
        if refused is not None:
            raise self._write_error(step, refused)
        metadata = {} if self.config is None else {CONFIG_KEY: self.config}
        if self.model is not None:
            metadata[MODEL_KEY] = self.model
        try:
            saved = self.manager.save(
                step, args=ocp.args.StandardSave(tree), force=True, custom_metadata=metadata,
            )
            self.manager.wait_until_finished()
            if saved:
                write_manifest(Path(self.directory) / str(step))
        except Exception as error:
            self._remove_temporary(step)
            self.manager.reload()
            raise self._write_error(step, error) from error
        return bool(saved)

    def _write_error(self, step: int, error: BaseException) -> CheckpointError:
        """The one message for a checkpoint that could not be written: step, path, reason."""
        # Without an OSError behind it (tensorstore raises ValueError): its type, first line.
        found = os_error(error)
        reason = os.strerror(found.errno) if found is not None else _first_line(error)
        # A step committed without its manifest cannot be verified: it is not counted.
        kept = [s for s in self.all_steps() if s != step]
        return CheckpointError(
            f"could not write the checkpoint of step {step} to "
            f"{os.path.join(self.directory, str(step))}: {reason}. "
            + (f"The earlier checkpoints (steps {', '.join(map(str, kept))}) are intact; "
               if kept else "No earlier checkpoint exists; ")
            + "free space or fix the permissions, then resume."
        )

    def _remove_temporary(self, step: int) -> None:
        """Removes orbax's unfinished ``<step>.orbax-checkpoint-tmp*`` folder of a failed save."""
        for tmp in Path(self.directory).glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def saved_config(self, step: int | None = None) -> dict[str, Any] | None:
        """The config saved with ``step`` (default: the newest), or None when it has none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        return (self.manager.metadata(step).custom_metadata or {}).get(CONFIG_KEY)

    def saved_model(self, step: int | None = None) -> Any:
        """The cell or stack saved with ``step`` (default: the newest), rebuilt by its
        constructor (`seqnets.from_config`); None when the checkpoint holds no model."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        saved = (self.manager.metadata(step).custom_metadata or {}).get(MODEL_KEY)
        return None if saved is None else from_config(saved)

    def restore_params(self, like: Any = None, step: int | None = None) -> Any:
        """The parameters of a checkpoint, whatever else it holds, verified.

        From a `TrainState` (at the top of the saved tree or inside it) the ``params`` are
        returned and the rest (the optimizer state, which a new optimizer does not need)
        is dropped; a checkpoint of parameters alone (``save(params, step=...)``) is
        returned whole. The files are checked against the checkpoint's manifest first.

        Args:
          like: the parameters' expected tree, shapes and dtypes (e.g. ``model.init``'s);
            the result is checked against it and comes back in its containers. None
            returns them in the saved structure (dicts and lists, as saved).
          step: which checkpoint; the newest when None.

        Raises:
          FileNotFoundError: when the directory holds no checkpoint.
          ValueError: when the checkpoint's parameters differ from ``like`` in structure,
            shape or dtype, or it holds several train states.
          CheckpointError: when the checkpoint is damaged (nothing is moved aside here).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to read parameters from in {self.directory}.")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        saved_layout = self._saved_layout(step)
        abstract = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
            _plain_layout(saved_layout))
        params = _params_of(self._read_verified(abstract, step), step)
        if like is None:
            return params
        problems = _tree_problems(like, params) if jax.tree.structure(like) == \
            jax.tree.structure(params) else [_layout_mismatch(like, params) or
                                            f"tree structure {jax.tree.structure(params)}, "
                                            f"expected {jax.tree.structure(like)}"]
        if problems:
            raise ValueError(
                f"the parameters saved at step {step} in {self.directory} are not those of "
                f"`like`: {'; '.join(problems[:3])}. Build `like` with the saved model's "
                "settings (Checkpointer.saved_model)."
            )
        return jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(params))

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Restores a checkpoint into ``like``'s structure, verified.

        ``like`` is a tree of the structure that was saved (a `TrainState`, or a pytree);
        its values are ignored, its shapes and dtypes are checked.

        With ``step=None``, tries the newest checkpoint first. One whose files differ from
        its manifest (or that has none), that orbax cannot read, or whose tree, shapes or
        dtypes differ from what was saved, is logged as a warning (step and file), moved
        to `aside_directory` (never deleted), and the next older one is tried. With an
        explicit ``step``, only that one is tried.

        Raises:
          FileNotFoundError: when the directory holds no checkpoint and none was moved aside.
          CheckpointError: when checkpoints exist but none is intact (or ``step`` is not),
            or when every checkpoint was moved aside by an earlier restore.
        """
        if step is not None:
            return self._restore_verified(like, step)
        steps = self.all_steps()
        if not steps and self.aside_directory.is_dir() and any(self.aside_directory.iterdir()):
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: the damaged ones were moved to "
                f"{self.aside_directory}. Nothing was restored; start afresh in another "
                "directory, or move a checkpoint back once repaired."
            )
        if not steps:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}.")
        failures, unverified = [], []
        for candidate in reversed(steps):
            if not (Path(self.directory) / str(candidate) / MANIFEST_FILE).exists():
                unverified.append(candidate)  # moved aside only if an older one restores
                continue
            try:
                restored = self._restore_verified(like, candidate)
            except CheckpointError as error:
                aside = self._move_aside(candidate)
                failures.append(f"step {candidate} ({error}; moved to {aside})")
                logger.warning("checkpoint %s; moved it to %s; trying an older one", error, aside)
                continue
            for newer in unverified:
                aside = self._move_aside(newer)
                logger.warning("checkpoint step %s has no manifest of its files, so its bytes "
                               "cannot be checked; moved it to %s and restored step %s",
                               newer, aside, candidate)
            return restored
        # Only steps whose manifest is missing: a save cut short (a kill) between orbax's
        # commit, which is atomic, and the manifest. Rather than lose the run, the newest
        # that orbax restores whole is used, with a warning.
        for candidate in unverified:
            try:
                restored = self._restore_verified(like, candidate, check_files=False)
            except CheckpointError as error:
                aside = self._move_aside(candidate)
                failures.append(f"step {candidate} ({error}; moved to {aside})")
                continue
            logger.warning("checkpoint step %s has no manifest of its files (its save was cut "
                           "short after orbax's commit), so its bytes could not be checked; "
                           "it is the only checkpoint orbax restores whole, so it was used",
                           candidate)
            return restored
        raise CheckpointError(
            f"no intact checkpoint in {self.directory}: " + "; ".join(failures)
            + ". Nothing was restored and nothing was deleted; start afresh in another "
            "directory, or move a checkpoint back once repaired."
        )

    def _saved_layout(self, step: int, check_files: bool = True) -> Any:
        """Orbax's record of what ``step`` holds (tree, shapes, dtypes), after its files are
        checked against their manifest (unless ``check_files`` is False).

        Raises:
          CheckpointError: when the files differ from the manifest (or it is missing), or
            orbax cannot read the step's metadata.
        """
        step_dir = Path(self.directory) / str(step)
        damaged = manifest_problems(step_dir) if check_files else None
        if damaged:
            raise CheckpointError(f"step {step} fails verification ({step_dir}): {damaged}")
        try:
            return self.manager.item_metadata(step)
        except Exception as error:  # orbax raises many kinds; the files match their manifest
            raise _unreadable(step, step_dir, error) from error

    def _restore_verified(self, like: Any, step: int, check_files: bool = True) -> Any:
        expected = _to_saveable(like)
        # An explicit one-device target: without it orbax refuses a checkpoint saved under
        # another device count ("Topology mismatch"), which is no damage. The caller
        # places the state where it wants it afterwards (e.g. seqnets.parallel.replicate).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=device), expected
        )
        saved_layout = self._saved_layout(step, check_files)
        other_optimizer = _optimizer_mismatch(abstract, saved_layout)
        if other_optimizer:
            raise ValueError(
                f"the checkpoint of step {step} in {self.directory} holds the same parameters "
                f"as the state to restore into, but another optimizer state: {other_optimizer}."
                " It was saved with another optimizer (or other optimizer settings). Restore "
                "into a state created with the saved run's optimizer, or read the parameters "
                "alone, Checkpointer.restore_params(like=state.params), and create a new train "
                "state from them."
            )
        other_model = _layout_mismatch(abstract, saved_layout)
        if other_model:
            # The caller's state is wrong, not the checkpoint: nothing is moved aside.
            raise ValueError(
                f"the checkpoint of step {step} in {self.directory} holds another model than "
                f"the state to restore into: {other_model}. Restore into a state built with "
                "the saved run's settings."
            )
        return _from_saveable(like, self._read_verified(abstract, step))

    def _read_verified(self, abstract: Any, step: int) -> Any:
        """The arrays of ``step`` read into ``abstract``, their structure, shapes and dtypes
        checked (the caller has checked the files against the manifest)."""
        step_dir = Path(self.directory) / str(step)
        try:
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as error:  # orbax and tensorstore raise many kinds
            raise _unreadable(step, step_dir, error) from error
        problems = _tree_problems(abstract, restored)
        if problems:
            raise CheckpointError(
                f"step {step} fails verification ({step_dir}): " + "; ".join(problems[:5])
                + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            )
        return restored

    def _move_aside(self, step: int) -> Path:
        aside = self.aside_directory / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), aside)
        self.manager.reload()
        return aside

    def close(self) -> None:
        self.manager.close()


def saved_configs(directory: str | os.PathLike) -> dict[int, dict[str, Any] | None]:
    """``{step: config}`` of every complete checkpoint in ``directory`` (oldest first).

    The config is the one `Checkpointer(config=...)` saved with the step, or None when the
    step holds none or its metadata cannot be read (`Checkpointer.restore` judges the
    damage). Reads only; an absent directory gives ``{}``.
    """
    if not os.path.isdir(directory):
        return {}
    manager = ocp.CheckpointManager(
        os.path.abspath(os.fspath(directory)),
        options=ocp.CheckpointManagerOptions(create=False, read_only=True),
    )
    try:
        configs = {}
        for step in sorted(manager.all_steps()):
            try:
                configs[step] = (manager.metadata(step).custom_metadata or {}).get(CONFIG_KEY)
            except Exception:  # orbax raises many kinds for a damaged step
                configs[step] = None
        return configs
    finally:
        manager.close()


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).partition(chr(10))[0][:300]}"


def _unreadable(step: int, step_dir: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"step {step} is unreadable ({step_dir}): {_first_line(error)}")


def _layout_mismatch(expected: Any, saved: Any) -> str | None:
    """How the saved arrays' shapes and dtypes differ from ``expected``'s, or None.

    Compared as multisets of (shape, dtype): orbax stores NamedTuples (optimizer states)
    as dicts, so the two trees' structures differ even when they hold the same arrays.
    """
    if saved is None:
        return None
    layout = lambda leaves: sorted(  # noqa: E731
        (tuple(leaf.shape), np.dtype(leaf.dtype).name) for leaf in leaves
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype")
    )
    want, got = layout(jax.tree.leaves(expected)), layout(jax.tree.leaves(saved))
    if want == got:
        return None
    # Multiset differences: an optimizer's moments have the parameters' shapes, so a plain
    # "not in" would call them expected and report "none".
    only_saved = list((Counter(got) - Counter(want)).elements())[:3]
    only_wanted = list((Counter(want) - Counter(got)).elements())[:3]
    return (f"{len(got)} saved arrays against {len(want)} expected; saved but not expected: "
            f"{only_saved or 'none'}; expected but not saved: {only_wanted or 'none'}")


def _optimizer_mismatch(expected: Any, saved: Any) -> str | None:
    """For a `TrainState`'s layout: how the optimizer states differ when the parameters
    do not, or None."""
    saved = getattr(saved, "tree", saved)  # orbax's tree metadata holds the plain tree
    if not (isinstance(expected, Mapping) and set(expected) in _STATE_FIELDS
            and isinstance(saved, Mapping) and set(saved) == set(expected)):
        return None
    if _layout_mismatch(expected["params"], saved["params"]):
        return None
    return _layout_mismatch(expected["opt_state"], saved["opt_state"])


def _plain_layout(saved: Any) -> Any:
    """orbax's tree metadata as plain dicts and lists, its leaves the arrays' metadata."""
    saved = getattr(saved, "tree", saved)
    if isinstance(saved, Mapping):
        return {key: _plain_layout(value) for key, value in saved.items()}
    if isinstance(saved, list | tuple):
        return [_plain_layout(value) for value in saved]
    return saved


def _params_of(tree: Any, step: int) -> Any:
    """The ``params`` of the one `TrainState` saved in ``tree``, or ``tree`` itself."""
    found = []

    def visit(node: Any) -> None:
        if isinstance(node, Mapping):
            if set(node) in _STATE_FIELDS:
                found.append(node["params"])
                return
            for value in node.values():
                visit(value)
        elif isinstance(node, list | tuple):
            for value in node:
                visit(value)

    visit(tree)
    if len(found) > 1:
        raise ValueError(f"the checkpoint of step {step} holds {len(found)} train states; "
                         "restore it whole with Checkpointer.restore(like) and pick one.")
    return found[0] if found else tree


def load_model(directory: str | os.PathLike, step: int | None = None) -> tuple[Any, Any]:
    """The model and its parameters, from a checkpoint folder alone.

    Args:
      directory: a `Checkpointer`'s directory, whose checkpoints were saved with
        ``Checkpointer(..., model=...)``.
      step: which checkpoint; the newest when None.

    Returns:
      ``(model, params)``: the cell or stack rebuilt from its saved configuration, and the
      saved parameters (`Checkpointer.restore_params`: a `TrainState`'s ``params``, or the
      whole tree of a checkpoint of parameters alone), in the saved structure.

    Raises:
      ValueError: when the checkpoint holds no model configuration.
    """
    checkpointer = Checkpointer(directory, save_every=1)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {os.path.abspath(directory)}.")
        model = checkpointer.saved_model(step)
        if model is None:
            raise ValueError(
                f"the checkpoint of step {step} in {os.path.abspath(directory)} holds no model "
                "configuration: save with Checkpointer(..., model=the cell or stack), or build "
                "the model yourself and use Checkpointer.restore_params."
            )
        return model, checkpointer.restore_params(step=step)
    finally:
        checkpointer.close()


def _tree_problems(expected: Any, restored: Any) -> list[str]:
    """Differences of structure, shape and dtype between two trees of arrays."""
    if jax.tree.structure(expected) != jax.tree.structure(restored):
        return [f"tree structure {jax.tree.structure(restored)}, expected "
                f"{jax.tree.structure(expected)}"]
    problems = []
    for (path, want), got in zip(jax.tree_util.tree_flatten_with_path(expected)[0],
                                 jax.tree.leaves(restored), strict=True):
        if tuple(np.shape(got)) != tuple(want.shape) or np.dtype(got.dtype) != np.dtype(want.dtype):
            problems.append(f"{jax.tree_util.keystr(path)}: {np.dtype(got.dtype).name}"
                            f"{tuple(np.shape(got))}, expected {np.dtype(want.dtype).name}"
                            f"{tuple(want.shape)}")
    return problems
