"""Synthetic recall tasks: multi-query associative recall (MQAR) and selective copying.

Both return a `TokenTask`: int32 token ``inputs (examples, seq_len)``, next-token
``labels`` of the same shape with `IGNORE` (-100) wherever no prediction is scored, the
boolean ``mask`` of the scored positions, and their indices ``positions (examples,
queries)`` (every example scores the same number of positions, so a model can gather its
outputs there and apply its head to those alone). ``labels[:, t]`` is what the model's
output at step ``t`` must predict: the token that should follow ``inputs[:, t]``.

**MQAR** (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient
Language Models", arXiv:2312.04927; the definition of Zoology's ``_mqar`` in
``zoology/data/associative_recall.py``). With vocabulary ``V``, ``P`` pairs, length ``L``:

* keys are ``P`` distinct tokens of ``1 .. V/2 - 1`` (the first half, 0 excluded), values
  ``P`` distinct tokens of ``V/2 .. V - 1``, both in a random order;
* the pairs come first, two tokens each: ``k_1 v_1 k_2 v_2 ... k_P v_P`` (positions
  ``0 .. 2P - 1``);
* every key is queried once after them, at position ``2P + 2 g_i`` for pair ``i``: the
  gaps ``g_1 .. g_P`` are distinct slots of ``0 .. S - 1``, ``S = (L - 2P) // 2``, drawn
  one after another without replacement with ``Pr(slot s) ~ (s + 1) ** (power_a - 1)``
  (a power law: with ``power_a = 0.01``, queries crowd towards the pairs);
* the label at a query's position is its key's value (the value "follows" the key in the
  token stream, as in the pairs); every other label is `IGNORE`;
* every other position holds a token drawn uniformly from ``0 .. V - 1`` (Zoology's
  ``random_non_queries=True``; 0 with ``random_non_queries=False``). Such a filler token may
  equal a key, as in Zoology; it carries no label.

Zoology needs ``4 P <= L``, so that the ``S >= P`` slots hold the ``P`` queries.

**Selective copying** (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", arXiv:2312.00752, section 4.1.1 and Figure 2; the layout of the S4
repository's copying data, ``variable=True``). With vocabulary ``A``, ``M`` tokens to copy,
length ``L``:

* token 0 is the noise (blank) token, ``A - 1`` the marker, ``1 .. A - 2`` the data tokens;
* the first ``L - M`` positions hold ``M`` data tokens (drawn uniformly, with repeats) at
  random distinct positions, in increasing order of position, and noise everywhere else;
* the last ``M`` positions hold the marker, and the label at the ``j``-th of them is the
  ``j``-th data token: the model outputs the data tokens in order, after the context.

Mamba's setting: ``A = 16``, ``M = 16``, sequences of about 4,096 steps.

Both are vectorised NumPy: draws without replacement use Floyd's algorithm (one pass per
drawn item over all examples) or exponential races (for the power law), so 100,000 MQAR
examples take seconds. They are deterministic: the same arguments and seed give
the same arrays, on any machine (NumPy's ``Generator`` with PCG64). Examples are drawn in
blocks of `BLOCK` rows, which bounds the memory of the power-law draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

IGNORE = -100  # the label of an unscored position (PyTorch's and Zoology's ignore_index)
BLOCK = 8_192  # examples drawn at a time: bounds the memory of the power-law draw


class TokenTask(NamedTuple):
    """A synthetic token task's examples.

    Attributes:
      inputs: int32 ``(examples, seq_len)`` token ids.
      labels: int32 ``(examples, seq_len)``: the target of the output at each step, and
        `IGNORE` (-100) where nothing is scored.
      mask: bool ``(examples, seq_len)``: ``labels != IGNORE``.
      positions: int32 ``(examples, queries)``: the scored steps of each example in
        increasing order (``mask`` is True exactly there).
    """

    inputs: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    positions: np.ndarray


def _positive(name: str, value: object, where: str) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int; got {value!r}.")
    return int(value)


def _distinct(rng: np.random.Generator, rows: int, k: int, n: int) -> np.ndarray:
    """``(rows, k)``: in each row ``k`` distinct integers of ``0 .. n - 1``, in a uniformly
    random order (every ordered draw without replacement equally likely).

    Floyd's algorithm (Bentley & Floyd 1987) draws a uniform ``k``-subset with ``k`` calls
    to the generator, whatever ``n``; the subset's order it leaves is not uniform, so each
    row is shuffled after.
    """
    out = np.empty((rows, k), np.int32)
    for i, top in enumerate(range(n - k, n)):
        t = rng.integers(0, top + 1, size=rows, dtype=np.int32)
        taken = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(taken, top, t)
    order = np.argsort(rng.random((rows, k)), axis=1)
    return np.take_along_axis(out, order, axis=1)


def _power_law_gaps(rng: np.random.Generator, rows: int, k: int, slots: int,
                    power_a: float) -> np.ndarray:
    """``(rows, k)``: ``k`` distinct slots of ``0 .. slots - 1`` per row, in the order in
    which successive draws without replacement with ``Pr(s) ~ (s + 1) ** (power_a - 1)``
    would pick them (as Zoology's ``np.random.choice(replace=False, p=p)``).

    Exponential races (the Gumbel top-k trick without the logarithms): slot ``s`` finishes
    at ``E_s / p_s`` with ``E_s`` standard exponential; the first finisher is slot ``s``
    with probability ``p_s``, and, the exponential being memoryless, the order of the
    others is that of draws from what is left.
    """
    slowness = np.arange(1, slots + 1, dtype=np.float64) ** (1.0 - power_a)  # ~ 1 / p_s
    finish = rng.standard_exponential((rows, slots)) * slowness
    return np.argsort(finish, axis=1)[:, :k]


def _finish(inputs: np.ndarray, labels: np.ndarray, positions: np.ndarray) -> TokenTask:
    return TokenTask(inputs.astype(np.int32, copy=False), labels.astype(np.int32, copy=False),
                     labels != IGNORE, positions.astype(np.int32))


def _blocks(num_examples: int, seed: int | Sequence[int], draw) -> TokenTask:
    rng = np.random.default_rng(seed)
    parts = [draw(rng, min(BLOCK, num_examples - start))
             for start in range(0, num_examples, BLOCK)]
    return TokenTask(*(np.concatenate(field) for field in zip(*parts, strict=True)))


def mqar_examples(
    num_examples: int,
    *,
    seq_len: int,
    num_pairs: int,
    vocab_size: int = 8_192,
    power_a: float = 0.01,
    random_non_queries: bool = True,
    seed: int | Sequence[int] = 0,
) -> TokenTask:
    """Multi-query associative recall examples, as Zoology's ``_mqar`` defines them.

    Args:
      num_examples: how many sequences.
      seq_len: the length ``L`` of each; at least ``4 * num_pairs``.
      num_pairs: the key-value pairs ``P`` of each sequence, every one queried once.
      vocab_size: ``V``; keys come from ``1 .. V/2 - 1``, values from ``V/2 .. V - 1``, so
        ``P <= V // 2 - 1``. Zoology uses 8,192.
      power_a: the power law of the query gaps, ``Pr(gap s) ~ (s + 1) ** (power_a - 1)``;
        1 is uniform, Zoology's 0.01 puts the queries near the pairs. Must be > 0.
      random_non_queries: fill the unused positions with uniform random tokens (True,
        Zoology's default) or with 0.
      seed: seed (or seed sequence) of NumPy's generator.

    Returns:
      A `TokenTask`: ``inputs``, ``labels`` and ``mask`` ``(num_examples, seq_len)``,
      ``positions (num_examples, num_pairs)`` (the queries' steps, where the labels are
      the values).

    Raises:
      ValueError: for a non-positive size, ``4 * num_pairs > seq_len``, too few keys in
        the vocabulary, or ``power_a <= 0``.

    >>> task = mqar_examples(2, seq_len=16, num_pairs=2, vocab_size=32, seed=0)
    >>> task.inputs.shape, task.positions.shape
    ((2, 16), (2, 2))
    >>> bool((task.labels[task.mask] >= 16).all()), int(task.mask.sum())
    (True, 4)
    """
    where = "seqnets.data.mqar"
    num_examples = _positive("num_examples", num_examples, where)
    L = _positive("seq_len", seq_len, where)
    P = _positive("num_pairs", num_pairs, where)
    V = _positive("vocab_size", vocab_size, where)
    if 4 * P > L:
        raise ValueError(
            f"{where}: seq_len must be at least 4 * num_pairs (the pairs take 2 * num_pairs "
            f"steps and each query needs a slot of 2 steps after them); got seq_len={L}, "
            f"num_pairs={P}. Use seq_len >= {4 * P} or num_pairs <= {L // 4}.")
    if P > V // 2 - 1:
        raise ValueError(
            f"{where}: num_pairs={P} distinct keys need vocab_size >= {2 * (P + 1)} (keys "
            f"come from 1 .. vocab_size // 2 - 1); got vocab_size={V}.")
    if not power_a > 0:
        raise ValueError(f"{where}: power_a must be > 0 (1 is uniform, Zoology uses 0.01); "
                         f"got {power_a!r}.")
    context, slots = 2 * P, (L - 2 * P) // 2

    def draw(rng: np.random.Generator, rows: int) -> TokenTask:
        keys = 1 + _distinct(rng, rows, P, V // 2 - 1)
        values = V // 2 + _distinct(rng, rows, P, V - V // 2)
        gaps = _power_law_gaps(rng, rows, P, slots, power_a)
        inputs = np.zeros((rows, L), np.int32)
        inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
        where_asked = context + 2 * gaps
        np.put_along_axis(inputs, where_asked, keys, axis=1)
        labels = np.full((rows, L), IGNORE, np.int32)
        np.put_along_axis(labels, where_asked, values, axis=1)
        if random_non_queries:
            # As Zoology: every 0 left (no key or value is 0) becomes a uniform token.
            filler = rng.integers(0, V, size=(rows, L), dtype=np.int32)
            inputs = np.where(inputs == 0, filler, inputs)
        return _finish(inputs, labels, np.sort(where_asked, axis=1))

    return _blocks(num_examples, seed, draw)


def selective_copying_examples(
    num_examples: int,
    *,
    seq_len: int,
    num_tokens: int = 16,
    vocab_size: int = 16,
    seed: int | Sequence[int] = 0,
) -> TokenTask:
    """Selective copying examples (the Mamba paper's section 4.1.1).

    Args:
      num_examples: how many sequences.
      seq_len: the length ``L`` of each: ``L - M`` steps of context, then ``M`` markers;
        at least ``2 * num_tokens``.
      num_tokens: ``M``, the data tokens to copy.
      vocab_size: ``A``, noise (0) and marker (``A - 1``) included, so at least 3.
      seed: seed (or seed sequence) of NumPy's generator.

    Returns:
      A `TokenTask`: ``inputs``, ``labels`` and ``mask`` ``(num_examples, seq_len)``,
      ``positions (num_examples, num_tokens)``, the marker steps ``L - M .. L - 1``, where
      the labels are the data tokens in their order of appearance.

    Raises:
      ValueError: for a non-positive size, ``seq_len < 2 * num_tokens`` or
        ``vocab_size < 3``.

    >>> task = selective_copying_examples(1, seq_len=10, num_tokens=3, vocab_size=6, seed=0)
    >>> context = task.inputs[0, :7]
    >>> data = context[context > 0]
    >>> bool((data == task.labels[0, 7:]).all()), task.inputs[0, 7:].tolist()
    (True, [5, 5, 5])
    """
    where = "seqnets.data.selective_copying"
    num_examples = _positive("num_examples", num_examples, where)
    L = _positive("seq_len", seq_len, where)
    M = _positive("num_tokens", num_tokens, where)
    A = _positive("vocab_size", vocab_size, where)
    if L < 2 * M:
        raise ValueError(
            f"{where}: seq_len must be at least 2 * num_tokens (num_tokens data tokens in "
            f"the context, then num_tokens markers); got seq_len={L}, num_tokens={M}. Use "
            f"seq_len >= {2 * M}.")
    if A < 3:
        raise ValueError(f"{where}: vocab_size must be at least 3 (noise 0, marker "
                         f"vocab_size - 1, and at least one data token); got {A}.")
    context = L - M

    def draw(rng: np.random.Generator, rows: int) -> TokenTask:
        tokens = rng.integers(1, A - 1, size=(rows, M), dtype=np.int32)
        spots = np.sort(_distinct(rng, rows, M, context), axis=1)
        inputs = np.zeros((rows, L), np.int32)
        np.put_along_axis(inputs, spots, tokens, axis=1)
        inputs[:, context:] = A - 1
        labels = np.full((rows, L), IGNORE, np.int32)
        labels[:, context:] = tokens
        positions = np.broadcast_to(np.arange(context, L), (rows, M))
        return _finish(inputs, labels, positions)

    return _blocks(num_examples, seed, draw)
