"""What `seqnets.training.Checkpointer` asks of the files: whether a directory can take a
checkpoint now (the operating system's answer, as an ``errno``), and whether a saved
checkpoint's files are the ones written (their manifest of sizes and SHA-256 checksums).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

# Written into each step's directory once orbax has committed it: every file's size and
# SHA-256, so that restoring names a damaged file before orbax reads it.
MANIFEST_FILE = "seqnets_files.json"


def os_error(error: BaseException) -> OSError | None:
    """The first `OSError` with an ``errno`` in ``error`` or its causes (``__cause__``,
    ``__context__``), or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def refusal(directory: str, nbytes: int) -> OSError | None:
    """Why ``directory`` cannot take ``nbytes`` of checkpoint now, as an `OSError`, or None.

    A file is created there and removed (read-only file system, permissions, a file where
    the directory should be), then the file system's free space is compared with
    ``nbytes``, the arrays' size in memory. Orbax's compression gains little on trained
    weights (about 7 % on the MNIST rows model), so a checkpoint that needs nearly all the
    free space may be refused although it would fit; one that does not fit is always
    refused here, before any thread of orbax's starts.
    """
    probe = os.path.join(directory, f".seqnets-probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
        stats = os.statvfs(directory)
    except OSError as error:
        return error
    if stats.f_bavail * stats.f_frsize < nbytes:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)
    return None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(step_dir: Path) -> None:
    """Records every file's size and SHA-256 under ``step_dir``; atomic by rename."""
    files = {
        str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": _file_digest(p)}
        for p in sorted(step_dir.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE
    }
    tmp = step_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, step_dir / MANIFEST_FILE)


def manifest_problems(step_dir: Path) -> str | None:
    """The first file that differs from the manifest (missing, resized, other bytes), a
    missing or unreadable manifest, or None when every file matches."""
    path = step_dir / MANIFEST_FILE
    try:
        files = json.loads(path.read_text())
    except FileNotFoundError:
        return (f"{path}, the SHA-256 checksums of its files, is missing, so its bytes cannot "
                "be checked (the save was cut short after orbax's commit?)")
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
