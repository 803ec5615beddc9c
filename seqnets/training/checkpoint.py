"""Checkpoints of a `TrainState` with orbax: save every N steps, keep the last K, resume.

What is saved is a `TrainState`, or any pytree of arrays and typed PRNG keys (a dict
holding a `TrainState` and what else a run needs to continue, such as an epoch's running
sums); it is restored into a tree of the same structure.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed in the middle of a save leaves the previous checkpoints intact.

Every checkpoint also records the SHA-256 of each saved array's bytes in orbax's own
checkpoint metadata (written in the same atomic commit), and, once committed, a manifest of
each file's size and SHA-256 (`MANIFEST_FILE`). Restoring checks the files against the
manifest, then the restored tree against the expected structure, shapes and dtypes and
against the array checksums, so a flipped bit in a data file, which orbax itself reads back
without complaint, is caught, and a truncated or damaged file is named.
`Checkpointer.restore` falls back from a damaged checkpoint to the newest intact one and
moves the damaged one aside (it never deletes a checkpoint).

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

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from seqnets.cells.config import from_config, to_config
from seqnets.training.guard import NonFiniteError
from seqnets.training.state import TrainState

CHECKSUM_KEY = "seqnets_sha256"
CONFIG_KEY = "seqnets_config"
MODEL_KEY = "seqnets_model"
# The field names a TrainState is saved under, at the top level or inside a saved tree.
_STATE_FIELDS = ({"params", "opt_state", "step", "key_data"}, {"params", "opt_state", "step", "key"})
# Written into each step's directory once orbax has committed it: every file's size and
# SHA-256, so that restoring names a damaged file before orbax reads it.
MANIFEST_FILE = "seqnets_files.json"


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


def checksums(tree: Any) -> dict[str, str]:
    """``{leaf path: sha256 hex of its bytes}`` of every array in ``tree`` (host copies)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    host = jax.device_get([leaf for _, leaf in leaves])
    return {
        jax.tree_util.keystr(path): hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        for (path, _), value in zip(leaves, host, strict=True)
    }


def _os_reason(error: BaseException) -> str:
    """The operating system's reason in ``error`` or its causes, e.g. "No space left on device"."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    for reason in ("No space left on device", "Read-only file system", "Permission denied",
                   "Disk quota exceeded", "Not a directory", "File exists"):
        if reason in text:
            return reason
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _file_in(error: BaseException, step_dir: Path) -> str:
    """The file an orbax/tensorstore error names (the innermost), else the step directory."""
    files = re.findall(r'local file "([^"]+)"', str(error))
    files = [f for f in files if not f.endswith("/")] or files
    return files[-1] if files else str(step_dir)


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
        # One copy to the host serves both the finiteness check and the checksums.
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
        metadata = {CHECKSUM_KEY: checksums(_to_saveable(host))}
        if self.config is not None:
            metadata[CONFIG_KEY] = self.config
        if self.model is not None:
            metadata[MODEL_KEY] = self.model
        try:
            saved = self.manager.save(
                step, args=ocp.args.StandardSave(tree), force=True, custom_metadata=metadata,
            )
            self.manager.wait_until_finished()
            if saved:
                _write_manifest(Path(self.directory) / str(step))
        except Exception as error:
            self._remove_temporary(step)
            self.manager.reload()
            kept = self.all_steps()
            raise CheckpointError(
                f"could not write the checkpoint of step {step} to "
                f"{os.path.join(self.directory, str(step))}: {_os_reason(error)}. "
                + (f"The earlier checkpoints (steps {', '.join(map(str, kept))}) are intact; "
                   if kept else "No earlier checkpoint exists; ")
                + "free space or fix the permissions, then resume."
            ) from error
        return bool(saved)

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
        returned whole. Every array read is checked against the saved checksums.

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
        damaged = _manifest_problems(Path(self.directory) / str(step))
        if damaged:
            raise CheckpointError(f"step {step} is damaged: {damaged}")
        try:
            saved_layout = self.manager.item_metadata(step)
        except Exception as error:
            raise CheckpointError(f"step {step} is unreadable: {type(error).__name__}: "
                                  f"{str(error).splitlines()[0][:200] if str(error) else ''}"
                                  ) from error
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

        With ``step=None``, tries the newest checkpoint first. One that orbax cannot read,
        or whose tree, shapes, dtypes or checksums differ from what was saved, is reported
        on stderr (step and file), moved to `aside_directory` (never deleted), and the next
        older one is tried. With an explicit ``step``, only that one is tried.

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
        failures = []
        for candidate in reversed(steps):
            try:
                return self._restore_verified(like, candidate)
            except CheckpointError as error:
                aside = self._move_aside(candidate)
                failures.append(f"step {candidate} ({error}; moved to {aside})")
                print(f"checkpoint {error}; moved it to {aside}; trying an older one",
                      file=sys.stderr, flush=True)
        raise CheckpointError(
            f"no intact checkpoint in {self.directory}: " + "; ".join(failures)
            + ". Nothing was restored and nothing was deleted; start afresh in another "
            "directory, or move a checkpoint back once repaired."
        )

    def _restore_verified(self, like: Any, step: int) -> Any:
        step_dir = Path(self.directory) / str(step)
        expected = _to_saveable(like)
        # An explicit one-device target: without it orbax refuses a checkpoint saved under
        # another device count ("Topology mismatch"), which is no damage. The caller
        # places the state where it wants it afterwards (e.g. seqnets.parallel.replicate).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=device), expected
        )
        damaged = _manifest_problems(step_dir)
        if damaged:
            raise CheckpointError(f"step {step} is damaged: {damaged}")
        try:
            saved_layout = self.manager.item_metadata(step)
        except Exception as error:
            raise CheckpointError(
                f"step {step} is unreadable: {_file_in(error, step_dir)}: "
                f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
            ) from error
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
        """The arrays of ``step`` read into ``abstract``, checked against the checksums (the
        caller has checked the files against the manifest)."""
        step_dir = Path(self.directory) / str(step)
        try:
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            recorded = self.manager.metadata(step).custom_metadata or {}
        except Exception as error:  # orbax and tensorstore raise many kinds
            first = str(error).splitlines()[0][:200] if str(error) else ""
            raise CheckpointError(
                f"step {step} is unreadable: {_file_in(error, step_dir)}: "
                f"{type(error).__name__}: {first}"
            ) from error
        problems = _tree_problems(abstract, restored)
        saved_sums = recorded.get(CHECKSUM_KEY)
        if not problems and saved_sums is not None:
            # By path, whatever the containers: a NamedTuple's field (".count") read back
            # into the dict that orbax's metadata describes (['count']) is the same array.
            saved_sums = {_canonical(path): digest for path, digest in saved_sums.items()}
            got = {_canonical(path): digest for path, digest in checksums(restored).items()}
            problems = [f"{path}: the bytes differ from the saved checksum"
                        for path, digest in got.items() if saved_sums.get(path) != digest]
            problems += [f"{path}: saved but not restored" for path in saved_sums if path not in got]
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


# One part of a jax.tree_util.keystr path: a dict key ['k'], an index [0], an attribute .a
_PATH_PART = re.compile(r"\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]|\.(\w+)")


def _canonical(path: str) -> str:
    """A ``jax.tree_util.keystr`` path with dict keys, indices and attributes alike:
    ``['opt_state'][0].count`` and ``['opt_state'][0]['count']`` both give
    ``opt_state/0/count``."""
    return "/".join("".join(groups) for groups in _PATH_PART.findall(path))


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


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(step_dir: Path) -> None:
    """Records every file's size and SHA-256 under ``step_dir``; atomic by rename."""
    files = {
        str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": _file_digest(p)}
        for p in sorted(step_dir.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE
    }
    tmp = step_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, step_dir / MANIFEST_FILE)


def _manifest_problems(step_dir: Path) -> str | None:
    """The first file that differs from the manifest (missing, resized, other bytes), or None.

    A checkpoint without a manifest (the run was stopped between orbax's commit and the
    manifest, or it was written by an older seqnets) is left to the later checks.
    """
    path = step_dir / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return f"{path}: unreadable manifest ({error})"
    for name, want in files.items():
        file = step_dir / name
        if not file.is_file():
            return f"{file}: missing"
        size = file.stat().st_size
        if size != want["size"]:
            return f"{file}: {size} bytes, expected {want['size']}"
        if _file_digest(file) != want["sha256"]:
            return f"{file}: the bytes differ from the saved SHA-256"
    return None
