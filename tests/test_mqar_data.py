"""The synthetic recall tasks: every invariant of MQAR (Zoology's ``_mqar``) and of selective
copying (the Mamba paper), their errors, their determinism, and the distributions of their
random draws.

The distribution checks compare empirical frequencies over N draws with the exact
probabilities, within 5 binomial standard deviations, ``5 sqrt(p (1 - p) / N)``: a correct
generator fails one of these checks with probability about 6e-7 per cell (and the seeds are
fixed, so a pass stays a pass), while the bugs they guard against (an order left unshuffled,
the power law reversed or ignored, the draws treated as a set) move some frequency by far
more than that.
"""

import numpy as np
import pytest

from seqnets.data import IGNORE, TokenTask, mqar_examples, selective_copying_examples


def assert_close_to(counts: np.ndarray, p: np.ndarray, n: int) -> None:
    """Frequencies ``counts / n`` within 5 binomial standard deviations of ``p``."""
    bound = 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(counts / n - p), bound + 1e-12)


# --- MQAR -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task():
    return mqar_examples(2_000, seq_len=64, num_pairs=8, vocab_size=128, seed=3)


def test_mqar_shapes_and_dtypes(task):
    assert isinstance(task, TokenTask)
    assert task.inputs.shape == task.labels.shape == task.mask.shape == (2_000, 64)
    assert task.positions.shape == (2_000, 8)
    assert task.inputs.dtype == task.labels.dtype == task.positions.dtype == np.int32
    assert task.mask.dtype == bool
    assert task.inputs.min() >= 0 and task.inputs.max() < 128


def test_mqar_pairs_come_first_keys_once_values_from_the_second_half(task):
    keys, values = task.inputs[:, 0:16:2], task.inputs[:, 1:16:2]
    assert keys.min() >= 1 and keys.max() < 64  # the first half, 0 excluded
    assert values.min() >= 64 and values.max() < 128  # the second half
    for row in (keys, values):  # distinct within each example
        assert (np.diff(np.sort(row, axis=1), axis=1) > 0).all()
    assert not task.mask[:, :16].any()  # no label inside the pairs


def test_mqar_every_key_queried_once_and_labelled_with_its_value(task):
    np.testing.assert_array_equal(task.mask, task.labels != IGNORE)
    assert (task.mask.sum(axis=1) == 8).all()
    for i in range(len(task.inputs)):
        row, labels = task.inputs[i], task.labels[i]
        where = np.flatnonzero(task.mask[i])
        np.testing.assert_array_equal(where, task.positions[i])
        value_of = dict(zip(row[0:16:2].tolist(), row[1:16:2].tolist(), strict=True))
        assert sorted(row[where].tolist()) == sorted(value_of)  # each key asked once
        assert [value_of[k] for k in row[where].tolist()] == labels[where].tolist()
        assert ((where - 16) % 2 == 0).all()  # a query starts a slot of two steps
    assert (task.labels[~task.mask] == IGNORE).all()


def test_mqar_unused_positions_random_or_zero():
    kwargs = dict(seq_len=32, num_pairs=4, vocab_size=64, seed=1)
    plain = mqar_examples(500, random_non_queries=False, **kwargs)
    used = plain.mask.copy()
    used[:, :8] = True
    assert (plain.inputs[~used] == 0).all()
    filled = mqar_examples(500, **kwargs)
    # The same draws apart from the filler: pairs and queries are unchanged.
    np.testing.assert_array_equal(filled.inputs[used], plain.inputs[used])
    np.testing.assert_array_equal(filled.labels, plain.labels)
    free = filled.inputs[~used]
    # Uniform over the whole vocabulary (each token's share 1/64, within 5 sigma).
    assert_close_to(np.bincount(free, minlength=64), np.full(64, 1 / 64), free.size)


def test_mqar_keys_are_uniform_ordered_draws_without_replacement():
    # 5 keys (1 .. 5), 2 pairs: all 20 ordered pairs of distinct keys equally likely.
    n = 40_000
    t = mqar_examples(n, seq_len=8, num_pairs=2, vocab_size=12, seed=5)
    first, second = t.inputs[:, 0], t.inputs[:, 2]
    assert (first != second).all()
    counts = np.bincount((first - 1) * 5 + (second - 1), minlength=25).reshape(5, 5)
    p = np.full((5, 5), 1 / 20)
    np.fill_diagonal(p, 0.0)
    assert_close_to(counts, p, n)


def test_mqar_query_gaps_follow_successive_power_law_draws():
    # seq_len 16, 2 pairs: slots s = 0 .. 5 at steps 4 + 2 s. Pair i's key is asked at the
    # i-th slot drawn, so P(pair 0 at a, pair 1 at b) = p_a p_b / (1 - p_a).
    n, power_a = 60_000, 0.01
    t = mqar_examples(n, seq_len=16, num_pairs=2, vocab_size=64, power_a=power_a, seed=7)
    slots = []
    for pair in range(2):
        asked = t.mask & (t.inputs == t.inputs[:, [2 * pair]])
        slots.append((np.argmax(asked, axis=1) - 4) // 2)
    p = np.arange(1, 7, dtype=float) ** (power_a - 1)
    p /= p.sum()
    joint = p[:, None] * p[None, :] / (1 - p[:, None])
    np.fill_diagonal(joint, 0.0)
    counts = np.bincount(slots[0] * 6 + slots[1], minlength=36).reshape(6, 6)
    assert_close_to(counts, joint, n)


def test_mqar_power_a_one_is_uniform():
    n = 30_000
    t = mqar_examples(n, seq_len=20, num_pairs=1, vocab_size=64, power_a=1.0, seed=2)
    slots = (t.positions[:, 0] - 2) // 2
    assert_close_to(np.bincount(slots, minlength=9), np.full(9, 1 / 9), n)


def test_mqar_fills_the_whole_context_at_four_steps_a_pair():
    # 4 * pairs == seq_len: every slot holds a query; all keys of the vocabulary used.
    t = mqar_examples(300, seq_len=16, num_pairs=4, vocab_size=10, seed=0)
    np.testing.assert_array_equal(t.positions, np.broadcast_to([8, 10, 12, 14], (300, 4)))
    np.testing.assert_array_equal(np.sort(t.inputs[:, 0:8:2], axis=1),
                                  np.broadcast_to([1, 2, 3, 4], (300, 4)))


def test_mqar_deterministic_by_seed():
    kwargs = dict(seq_len=64, num_pairs=8, vocab_size=256)
    a, b = mqar_examples(300, seed=11, **kwargs), mqar_examples(300, seed=11, **kwargs)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = mqar_examples(300, seed=12, **kwargs)
    assert (a.inputs != c.inputs).mean() > 0.5
    assert not np.array_equal(a.positions, c.positions)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(seq_len=60, num_pairs=16), r"at least 4 \* num_pairs.*seq_len >= 64"),
    (dict(seq_len=64, num_pairs=16, vocab_size=32), r"vocab_size >= 34"),
    (dict(seq_len=64, num_pairs=4, power_a=0.0), "power_a must be > 0"),
    (dict(seq_len=64, num_pairs=0), "num_pairs must be a positive int"),
    (dict(seq_len=64.0, num_pairs=4), "seq_len must be a positive int"),
])
def test_mqar_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mqar_examples(4, **kwargs)


# --- selective copying ----------------------------------------------------------------


def test_selective_copying_layout():
    n, L, M, A = 2_000, 40, 6, 10
    t = selective_copying_examples(n, seq_len=L, num_tokens=M, vocab_size=A, seed=4)
    assert t.inputs.shape == t.labels.shape == t.mask.shape == (n, L)
    assert t.inputs.dtype == t.labels.dtype == t.positions.dtype == np.int32
    context = t.inputs[:, : L - M]
    assert (t.inputs[:, L - M:] == A - 1).all()  # the markers
    assert ((context == 0) | ((context >= 1) & (context <= A - 2))).all()
    assert ((context > 0).sum(axis=1) == M).all()  # M data tokens among noise
    data = context[context > 0].reshape(n, M)  # in order of position
    np.testing.assert_array_equal(t.labels[:, L - M:], data)
    assert (t.labels[:, : L - M] == IGNORE).all()
    np.testing.assert_array_equal(t.mask, t.labels != IGNORE)
    np.testing.assert_array_equal(t.positions, np.broadcast_to(np.arange(L - M, L), (n, M)))


def test_selective_copying_draws_are_uniform():
    n, L, M, A = 20_000, 12, 3, 6
    t = selective_copying_examples(n, seq_len=L, num_tokens=M, vocab_size=A, seed=9)
    occupied = (t.inputs[:, : L - M] > 0).sum(axis=0)  # each step holds data w.p. M / 9
    assert_close_to(occupied, np.full(L - M, M / (L - M)), n)
    tokens = t.labels[:, L - M:].ravel()  # data tokens 1 .. 4, uniform with repeats
    assert_close_to(np.bincount(tokens, minlength=5)[1:], np.full(4, 1 / 4), tokens.size)
    repeats = (t.labels[:, L - M] == t.labels[:, L - M + 1]).mean()
    assert abs(repeats - 1 / 4) < 5 * np.sqrt(3 / 16 / n)


def test_selective_copying_deterministic_by_seed():
    kwargs = dict(seq_len=64, num_tokens=8, vocab_size=16)
    a = selective_copying_examples(200, seed=1, **kwargs)
    b = selective_copying_examples(200, seed=1, **kwargs)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = selective_copying_examples(200, seed=2, **kwargs)
    assert not np.array_equal(a.inputs, c.inputs)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(seq_len=15, num_tokens=8), r"at least 2 \* num_tokens.*seq_len >= 16"),
    (dict(seq_len=16, num_tokens=4, vocab_size=2), "vocab_size must be at least 3"),
    (dict(seq_len=16, num_tokens=-1), "num_tokens must be a positive int"),
])
def test_selective_copying_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        selective_copying_examples(4, **kwargs)


def test_blocks_join_seamlessly(monkeypatch):
    # More examples than one block: the blocks' examples are independent draws, and every
    # invariant holds across the seam.
    import seqnets.data.mqar as module

    monkeypatch.setattr(module, "BLOCK", 64)
    t = mqar_examples(150, seq_len=32, num_pairs=4, vocab_size=64, seed=0)
    assert t.inputs.shape == (150, 32) and (t.mask.sum(axis=1) == 4).all()
    assert not np.array_equal(t.inputs[:64], t.inputs[64:128])
