"""Data parallel on 8 CPU devices (conftest sets them): every path matches one device."""

import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P
from reduction_tolerance import assert_close_within, sgd_tolerance

import seqnets as sn
from seqnets import parallel
from seqnets.training import (
    create_train_state,
    make_train_step,
    skip_nonfinite,
    softmax_cross_entropy,
    train_step_fn,
)

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 8
CELL = sn.lstm(16)
STEPS, BATCH, TIME, LR = 4, 64, 28, 0.5
# Each gradient element sums at most BATCH * TIME terms, then DEVICES partial sums.
TERMS = BATCH * TIME + DEVICES


def loss_fn(params, batch, key):
    x, y = batch
    carry, _ = sn.scan(CELL, params["rnn"], x)
    loss = softmax_cross_entropy(carry[1] @ params["w"], y)
    return loss, {"loss_copy": loss}


def example_loss(params, example):
    x, y = example
    return loss_fn(params, (x[None], y[None]), None)[0]


def fresh_state(optimizer):
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": CELL.init(k1, 28), "w": 0.1 * jax.random.normal(k2, (16, 10))}
    return create_train_state(params, optimizer, jax.random.key(1))


def batches():
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        yield (rng.normal(size=(BATCH, TIME, 28)).astype(np.float32),
               rng.integers(0, 10, BATCH).astype(np.int32))


@pytest.fixture(scope="module")
def optimizer():
    return optax.sgd(LR)


@pytest.fixture(scope="module")
def single_device(optimizer):
    """One device's run: the parameters before each step and after, the last loss, a tolerance."""
    assert jax.device_count() == DEVICES, "tests/conftest.py sets 8 CPU devices"
    state = fresh_state(optimizer)
    step = make_train_step(loss_fn, optimizer, donate=False)
    history = [jax.device_get(state.params)]
    for batch in batches():
        state, metrics = step(state, batch)
        history.append(jax.device_get(state.params))
    tol = sgd_tolerance(example_loss, history[:-1], list(batches()), LR, TERMS)
    return history, float(metrics["loss"]), tol


def assert_matches(state, reference):
    history, _, tol = reference
    assert int(state.step) == STEPS
    assert_close_within(jax.device_get(state.params), history[-1], history[0], tol)


def test_jit_with_sharding_matches_one_device(optimizer, single_device):
    mesh = parallel.data_mesh()
    state = parallel.replicate(fresh_state(optimizer), mesh)
    step = make_train_step(loss_fn, optimizer)  # the very same step
    for batch in batches():
        sharded = parallel.shard_batch(batch, mesh)
        assert len(sharded[0].sharding.device_set) == DEVICES
        state, metrics = step(state, sharded)
    assert_matches(state, single_device)
    np.testing.assert_allclose(float(metrics["loss"]), single_device[1], rtol=1e-5)


def test_pmap_matches_one_device(optimizer, single_device):
    state = parallel.stack_for_pmap(fresh_state(optimizer), DEVICES)
    step = parallel.make_pmap_train_step(loss_fn, optimizer)
    for batch in batches():
        state, metrics = step(state, parallel.split_for_pmap(batch, DEVICES))
    np.testing.assert_allclose(np.asarray(metrics["loss"]), single_device[1], rtol=1e-5)
    assert_matches(parallel.unstack_from_pmap(state), single_device)


def test_shard_map_matches_one_device(optimizer, single_device):
    mesh = parallel.data_mesh()
    state = parallel.replicate(fresh_state(optimizer), mesh)
    step = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)
    for batch in batches():
        state, metrics = step(state, parallel.shard_batch(batch, mesh))
    np.testing.assert_allclose(float(metrics["loss_copy"]), single_device[1], rtol=1e-5)
    assert_matches(state, single_device)


def test_a_wrongly_averaged_gradient_fails_the_comparison(optimizer, single_device):
    """The comparison above must catch the bug it guards against: pmean of already-summed
    shard_map gradients, N times too large (shared/README's pitfall)."""

    def n_times(loss, grads, metrics):
        loss, metrics = jax.lax.pmean((loss, metrics), parallel.AXIS)
        return loss, jax.lax.pmean(grads, parallel.AXIS), metrics

    mesh = parallel.data_mesh()
    step = jax.jit(jax.shard_map(train_step_fn(loss_fn, optimizer, reduce=n_times), mesh=mesh,
                                 in_specs=(P(), P(parallel.AXIS)), out_specs=(P(), P())))
    state = parallel.replicate(fresh_state(optimizer), mesh)
    for batch in batches():
        state, _ = step(state, parallel.shard_batch(batch, mesh))
    with pytest.raises(AssertionError, match="exceeds the tolerance"):
        assert_matches(state, single_device)


def test_shard_map_step_clips_and_guards_like_the_one_device_step():
    clip = 0.05
    optimizer = skip_nonfinite(optax.chain(optax.clip_by_global_norm(clip), optax.sgd(1.0)))
    mesh = parallel.data_mesh()
    batch = next(batches())
    step = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)
    state, metrics = step(parallel.replicate(fresh_state(optimizer), mesh),
                          parallel.shard_batch(batch, mesh))
    start = fresh_state(optimizer)
    ref, ref_metrics = make_train_step(loss_fn, optimizer, donate=False)(start, batch)
    norm = float(ref_metrics["grad_norm"])
    assert norm > clip  # so the clip acted
    np.testing.assert_allclose(float(metrics["grad_norm"]), norm, rtol=1e-5)
    assert int(state.opt_state.count) == 1 and int(state.opt_state.skipped) == 0
    # One SGD step at the clipped learning rate clip / norm.
    tol = sgd_tolerance(example_loss, [start.params], [batch], clip / norm, TERMS)
    assert_close_within(jax.device_get(state.params), jax.device_get(ref.params),
                        jax.device_get(start.params), tol)


def _collectives_inside_loops(jaxpr, inside=False) -> list[str]:
    """Names of the cross-device reductions that run inside a scan or while loop."""
    found = []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if inside and ("psum" in name or "pmean" in name or "all_reduce" in name):
            found.append(name)
        loop = inside or name in ("scan", "while")
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    found += _collectives_inside_loops(sub, loop)
    return found


def test_shard_map_step_reduces_gradients_once_not_at_every_time_step(optimizer):
    """Replicated weights used inside the time loop must not all-reduce their gradient there.

    Each use of an unvarying weight inside ``shard_map`` is a cast whose transpose is a
    psum; ``scan`` casts the parameters once, before the loop, so the backward loop stays
    free of collectives (with one psum per step, a 2-device row-MNIST step spent most of
    its time in them).
    """
    mesh = parallel.data_mesh()
    state = parallel.replicate(fresh_state(optimizer), mesh)
    step = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)
    jaxpr = jax.make_jaxpr(step)(state, parallel.shard_batch(next(batches()), mesh)).jaxpr
    assert _collectives_inside_loops(jaxpr) == []
    assert "psum" in str(jaxpr)  # the gradient is still reduced, once, after the loop


def test_replicate_leaves_the_callers_arrays_alive_when_the_step_donates(optimizer):
    state = fresh_state(optimizer)
    replicated = parallel.replicate(state, parallel.data_mesh())
    make_train_step(loss_fn, optimizer)(replicated, next(batches()))  # donates `replicated`
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(state))
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(replicated.params))


def test_batch_that_does_not_divide_is_refused():
    mesh = parallel.data_mesh()
    batch = (np.zeros((60, 28, 28), np.float32), np.zeros((60,), np.int32))
    with pytest.raises(ValueError, match="global batch of 60 does not divide over 8 devices") as info:
        parallel.shard_batch(batch, mesh)
    # The library names its own API, not an experiment's flag.
    assert "data_mesh(num_devices)" in str(info.value) and "--" not in str(info.value)
    with pytest.raises(ValueError, match="global batch of 60 does not divide over 8 devices"):
        parallel.split_for_pmap(batch, DEVICES)
    with pytest.raises(ValueError, match="asked for 9 devices; 8 are available"):
        parallel.data_mesh(9)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_to_the_same_parameters_as_one(tmp_path):
    """Gloo reduces over processes in another order: the tolerance follows from that."""
    import multihost_model as m

    worker = [sys.executable, str(ROOT / "tests" / "multihost_worker.py")]
    one = subprocess.run([*worker, str(tmp_path / "one.npz"), "1", "0", "0", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    port = str(free_port())
    procs = [subprocess.Popen([*worker, str(tmp_path / "two.npz"), "2", str(p), port, "2"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for p in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    assert "process 1: done" in outputs[1]
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert a.files == b.files
    treedef = jax.tree.structure(m.init_params())

    def params_at(npz, k):
        return jax.tree.unflatten(treedef, [npz[f"step{k}/{i}"] for i in range(treedef.num_leaves)])

    history = [params_at(a, k) for k in range(m.STEPS + 1)]
    # Each gradient element sums batch * time terms, then 4 devices' partial sums.
    tol = sgd_tolerance(m.example_loss, history[:-1], list(m.batches()), m.LR,
                        m.GLOBAL_BATCH * m.TIME + 4)
    assert_close_within(params_at(b, m.STEPS), history[-1], history[0], tol)
