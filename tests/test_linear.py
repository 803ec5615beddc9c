"""Linear recurrent cells and the three kernels of the diagonal family, `seqnets.ops.diagonal`.

Tolerance: every mode computes the same sums in another order (the chunked mode adds
``A * carry_in`` after the chunk, the parallel mode combines pairs in a tree), so results
differ by float32 reassociation: a few ulps of the largest term per step. The states are
bounded (|a| <= 1), and an error made at one step decays (or for |a| close to 1 persists)
rather than grows, so over T steps it stays near sqrt(T) ulps of |h|: at T = 4,096 about
64 * 6e-8 * |h| = 4e-6 for |h| ~ 1. ATOL = RTOL = 1e-5 covers it; an off-by-one in a
mask (a reset one step late, a padded step not frozen) changes outputs by O(|h|) ~ 0.1-1,
which `test_the_tolerance_catches_a_reset_one_step_late` checks.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn
from seqnets.cells.base import SegmentCarry
from seqnets.ops.diagonal import linear_recurrence
from seqnets.ops.masks import where_rows
from seqnets.ops.registry import ScanMode
from seqnets.sequence import linear

ATOL = RTOL = 1e-5
MODES = ("sequential", "chunked", "parallel")
F, H = 3, 5
# Built once, so that the jitted runs below compile once per cell and shape.
LINEAR_CELLS = {
    "min_gru": sn.min_gru(H),
    "min_lstm": sn.min_lstm(H),
    "lru": sn.lru(H, state_size=H + 2),
    "rg_lru": sn.rg_lru(H),
}


@pytest.fixture(params=sorted(LINEAR_CELLS))
def linear_name(request):
    return request.param


# The gradient tests' long compilations: minGRU (real carry) and the LRU (complex) by
# default, the other two with -m slow (the same diagonal kernels and runner).
@pytest.fixture(params=[n if n in ("min_gru", "lru") else pytest.param(n, marks=pytest.mark.slow)
                        for n in sorted(LINEAR_CELLS)])
def gradient_linear_name(request):
    return request.param


def close(got, want, atol=ATOL, rtol=RTOL):
    chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


@functools.partial(
    jax.jit, static_argnames=("cell", "mode", "reverse", "time_major", "chunk_size"))
def run(cell, params, xs, mode, *, carry=None, lengths=None, resets=None, reverse=False,
        time_major=False, chunk_size=None):
    """`seqnets.scan` in ``mode``; ``"step"`` runs the cell's step in the classic loop."""
    if mode == "step":
        cell, mode = cell._replace(recurrence=None), "sequential"
    return sn.scan(cell, params, xs, carry=carry, lengths=lengths, resets=resets,
                   reverse=reverse, time_major=time_major, mode=mode, chunk_size=chunk_size)


@functools.cache
def _generation_step(cell):
    @jax.jit
    def step(params, carry, x_t, valid, zero):
        carry = where_rows(zero, cell.initial_carry(x_t.shape[0]), carry)
        new, y = cell.apply(params, carry, x_t)
        return where_rows(valid, new, carry), jnp.where(valid[:, None], y, 0.0)

    return step


def generate(cell, params, xs, *, carry=None, lengths=None, resets=None, reverse=False):
    """The reference: ``cell.apply`` one token at a time in a Python loop (batch-major)."""
    batch, time = xs.shape[:2]
    carry = cell.initial_carry(batch) if carry is None else carry
    lengths = np.full((batch,), time) if lengths is None else np.asarray(lengths)
    resets = np.zeros((batch, time), bool) if resets is None else np.asarray(resets)
    step = _generation_step(cell)
    xs = np.asarray(xs)  # a NumPy slice per step, not a dispatched device op
    ys = [None] * time
    for t in (range(time - 1, -1, -1) if reverse else range(time)):
        # A reset marks the start of an episode; the reversed run meets it one step later.
        at = t + 1 if reverse else t
        zero = resets[:, at] & (at < lengths) if at < time else np.zeros(batch, bool)
        carry, ys[t] = step(params, carry, xs[:, t], t < lengths, zero)
    # NumPy's stack: jnp.stack would compile a concatenation of T operands (~20 s at 4,096).
    return carry, np.stack([np.asarray(y) for y in ys], axis=1)


def setup(name, batch=3, time=9, key=0):
    cell = LINEAR_CELLS[name]
    params = cell.init(jax.random.key(key), F)
    xs = jax.random.normal(jax.random.key(key + 1), (batch, time, F))
    carry = cell.initial_carry(batch)
    h = carry.h if isinstance(carry, SegmentCarry) else carry
    noise = jax.random.normal(jax.random.key(key + 2), h.shape)
    h = (h + noise * (1 + 1j if h.dtype == jnp.complex64 else 1)).astype(h.dtype)
    # A carry returned mid-stream: its next step does not start a segment.
    carry = SegmentCarry(jnp.zeros_like(carry.start), h) if isinstance(carry, SegmentCarry) else h
    return cell, params, xs, carry


def state_of(carry):
    return carry.h if isinstance(carry, SegmentCarry) else carry


# ---- the kernels ------------------------------------------------------------------------

def kernel_inputs(time, dtype=jnp.float32, batch=3, state=4):
    k = jax.random.split(jax.random.key(time), 4)
    a = jax.random.uniform(k[0], (time, batch, state), minval=0.5, maxval=1.0)
    b = jax.random.normal(k[1], (time, batch, state))
    h0 = jax.random.normal(k[2], (batch, state))
    a = a.at[time // 3, 1].set(0.0)  # a reset
    if dtype == jnp.complex64:
        phase = jax.random.uniform(k[3], a.shape, maxval=6.0)
        a = (a * jnp.exp(1j * phase)).astype(dtype)
        b, h0 = (b * (1 - 1j)).astype(dtype), (h0 * (1 + 1j)).astype(dtype)
    return a, b, h0


def loop_recurrence(a, b, h0, reverse):
    out, h = [None] * a.shape[0], h0
    for t in (range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0])):
        h = a[t] * h + b[t]
        out[t] = h
    return jnp.stack(out)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64], ids=["real", "complex"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mode,chunk_size", [
    ("sequential", None), ("parallel", None), ("chunked", None), ("chunked", 1),
    ("chunked", 7), ("chunked", 1000)])
def test_every_kernel_equals_the_loop(mode, chunk_size, reverse, dtype):
    a, b, h0 = kernel_inputs(50, dtype)  # 50 = 7 * 7 + 1: the last chunk is padded
    hs = jax.jit(linear_recurrence, static_argnames=("mode", "chunk_size", "reverse"))(
        a, b, h0, mode=mode, chunk_size=chunk_size, reverse=reverse)
    assert hs.dtype == dtype and hs.shape == a.shape
    close(hs, loop_recurrence(a, b, h0, reverse))


@pytest.mark.parametrize("mode", ["chunked", "parallel"])
def test_kernel_gradients_equal_the_sequential_ones(mode):
    a, b, h0 = kernel_inputs(300)
    w = jax.random.normal(jax.random.key(9), a.shape)

    @functools.partial(jax.jit, static_argnames="mode")
    @functools.partial(jax.grad, argnums=(0, 1, 2))
    def grad(a, b, h0, mode):
        return jnp.sum(w * linear_recurrence(a, b, h0, mode=mode, chunk_size=16)) / a.shape[0]

    close(grad(a, b, h0, mode), grad(a, b, h0, "sequential"))


def test_a_constant_decay_equals_its_broadcast_in_every_mode():
    """``a`` of shape ``(state,)`` or ``(1, batch, state)``: values and gradients as broadcast."""
    a, b, h0 = kernel_inputs(40)
    w = jax.random.normal(jax.random.key(9), a.shape)

    @functools.partial(jax.jit, static_argnames=("mode", "broadcast", "reverse"))
    @functools.partial(jax.value_and_grad, argnums=(0, 1, 2))
    def value_and_grad(a_in, b, h0, mode, broadcast, reverse):
        a_in = jnp.broadcast_to(a_in, b.shape) if broadcast else a_in
        hs = linear_recurrence(a_in, b, h0, mode=mode, chunk_size=6, reverse=reverse)
        return jnp.sum(w * hs**2) / b.shape[0]

    for constant in (a[7, 0], a[7:8]):
        for reverse in (False, True):
            want = value_and_grad(constant, b, h0, "sequential", True, reverse)
            # The sequential kernel is the one that treats a constant a apart; the others
            # broadcast it, so one direction each suffices for them.
            for mode in MODES if reverse else ("sequential",):
                close(value_and_grad(constant, b, h0, mode, False, reverse), want)


def test_kernel_with_no_steps_returns_an_empty_array():
    a, b, h0 = kernel_inputs(4)
    for mode in MODES:
        assert linear_recurrence(a[:0], b[:0], h0, mode=mode).shape == (0, 3, 4)


def test_kernel_rejects_bad_shapes_and_chunk_sizes():
    a, b, h0 = kernel_inputs(8)
    with pytest.raises(ValueError, match=r"b must be \(time, \*h0.shape\) = \(time, 3, 4\) "
                                         r"and a that shape or one that broadcasts to it; "
                                         r"got a \(8, 3, 4\), b \(8, 2, 4\)"):
        linear_recurrence(a, b[:, :2], h0)
    with pytest.raises(ValueError, match=r"got a \(3,\), b \(8, 3, 4\)"):
        linear_recurrence(a[0, 0, :3], b, h0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int; got 0"):
        linear_recurrence(a, b, h0, mode="chunked", chunk_size=0)


# ---- the cells --------------------------------------------------------------------------

def test_cells_are_linear_and_step_is_built_from_the_coefficients(linear_name):
    cell, params, xs, carry = setup(linear_name)
    recurrence = cell.recurrence
    assert recurrence.family == cell.family == "diagonal" and cell.name == linear_name
    projected = cell.project(params, xs[:, 0])
    start = (jnp.zeros((3, 1), bool),) if recurrence.starts_segments else ()
    a, b = recurrence.coefficients(params, projected, *start)
    h0 = state_of(carry)
    assert a.dtype == b.dtype == h0.dtype and b.shape == h0.shape
    assert jnp.broadcast_shapes(a.shape, b.shape) == b.shape
    h, y = cell.step(params, carry, projected)
    close(state_of(h), a * h0 + b, atol=0, rtol=0)
    close(y, recurrence.readout(params, state_of(h), projected), atol=0, rtol=0)
    assert y.shape == (3, H) and y.dtype == jnp.float32
    zero = state_of(cell.initial_carry(3))
    assert not np.any(np.asarray(zero))


def test_classic_cells_are_not_linear():
    for cell in (sn.lstm(3), sn.gru(3), sn.elman(3)):
        assert cell.recurrence is None and cell.family == "nonlinear"


def test_cell_linear_is_a_deprecated_alias_of_recurrence():
    with pytest.warns(DeprecationWarning, match="Cell.recurrence"):
        assert LINEAR_CELLS["min_gru"].linear is LINEAR_CELLS["min_gru"].recurrence
    with pytest.warns(DeprecationWarning):
        assert sn.lstm(3).linear is None


def test_modes_equal_generation_with_carry_lengths_and_resets(linear_name):
    cell, params, xs, carry = setup(linear_name, batch=4, time=11)
    lengths = jnp.array([11, 6, 0, 9])
    resets = np.zeros((4, 11), bool)
    resets[0, 4] = resets[1, 2] = resets[3, 9] = resets[1, 8] = True  # [1, 8] is padding
    for reverse in (False, True):
        want = generate(cell, params, xs, carry=carry, lengths=lengths, resets=resets,
                        reverse=reverse)
        for mode in ("step", *MODES):
            got = run(cell, params, xs, mode, carry=carry, lengths=lengths,
                      resets=jnp.asarray(resets), reverse=reverse, chunk_size=3)
            close(got, want)
            np.testing.assert_array_equal(got[1][1, 6:], 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_time_major_gives_the_same_result(mode):
    cell, params, xs, carry = setup("lru")
    resets = jnp.zeros((3, 9), bool).at[2, 5].set(True)
    want = run(cell, params, xs, mode, carry=carry, resets=resets)
    got = run(cell, params, jnp.swapaxes(xs, 0, 1), mode, carry=carry, resets=resets.T,
              time_major=True)
    close((got[0], jnp.swapaxes(got[1], 0, 1)), want)


def test_the_tolerance_catches_a_reset_one_step_late():
    """The bug the tolerance must still see: a reset folded into the wrong step."""
    cell, params, xs, carry = setup("min_gru", batch=2, time=12)
    resets = jnp.zeros((2, 12), bool).at[0, 5].set(True)
    _, ys = run(cell, params, xs, "chunked", carry=carry, resets=resets)
    _, late = run(cell, params, xs, "chunked", carry=carry, resets=jnp.roll(resets, 1, axis=1))
    assert float(jnp.max(jnp.abs(ys - late))) > 100 * ATOL


def grad_of(cell, xs_shape, key=7):
    """A jitted ``(gradient, ys)``: the gradient w.r.t. (params, xs, carry) of a loss of the
    outputs and carry, and the outputs, from one compilation."""
    w = jax.random.normal(jax.random.key(key), (*xs_shape[:2], cell.hidden_size))

    def loss(params, xs, carry, mode, **kwargs):
        carry, ys = run(cell, params, xs, mode, carry=carry, **kwargs)
        return jnp.sum(w * ys) / xs.shape[1] + jnp.sum(jnp.abs(state_of(carry)) ** 2), ys

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True),
                   static_argnames=("mode", "reverse"))


def test_gradients_equal_in_every_mode(gradient_linear_name):
    linear_name = gradient_linear_name
    """Gradients w.r.t. params, xs and the carry in (complex carry: JAX's convention, the
    same on both sides)."""
    cell, params, xs, carry = setup(linear_name, batch=2, time=10)
    grad = grad_of(cell, xs.shape)
    kwargs = {"lengths": jnp.array([10, 7]), "resets": jnp.zeros((2, 10), bool).at[0, 3].set(True)}
    for reverse in (False, True):
        want = grad(params, xs, carry, "sequential", reverse=reverse, **kwargs)
        for mode in ("step", "chunked", "parallel"):
            close(grad(params, xs, carry, mode, reverse=reverse, **kwargs), want)


def test_lru_gradients_match_a_python_loop_in_real_arithmetic():
    """The complex parameters' gradients, against the same LRU written with real numbers."""
    cell, params, xs, _ = setup("lru", batch=2, time=8)
    w = jax.random.normal(jax.random.key(3), (2, 8, H))

    def real_lru(params, xs):
        r = jnp.exp(-jnp.exp(params["nu_log"]))
        theta = jnp.exp(params["theta_log"])
        lam_re, lam_im = r * jnp.cos(theta), r * jnp.sin(theta)
        gamma = jnp.exp(params["gamma_log"])
        h_re = h_im = jnp.zeros((2, H + 2))
        total = 0.0
        for t in range(8):
            u_re = gamma * (xs[:, t] @ params["b_re"])
            u_im = gamma * (xs[:, t] @ params["b_im"])
            h_re, h_im = lam_re * h_re - lam_im * h_im + u_re, lam_re * h_im + lam_im * h_re + u_im
            y = h_re @ params["c_re"] - h_im @ params["c_im"] + xs[:, t] @ params["d"]
            total = total + jnp.sum(w[:, t] * y)
        return total

    def seqnets_lru(params, xs, mode):
        return jnp.sum(w * run(cell, params, xs, mode)[1])

    want = jax.jit(jax.grad(real_lru))(params, xs)
    grad = jax.jit(jax.grad(seqnets_lru), static_argnames="mode")
    # Complex exp against cos/sin: each rounds differently, by a few ulps of the
    # unnormalised sum of 8 steps x 2 rows x 5 outputs (magnitude ~10): 1e-4 absolute.
    for mode in MODES:
        close(grad(params, xs, mode), want, atol=1e-4)


def test_padded_steps_get_exactly_zero_finite_gradients_with_nan_padding(gradient_linear_name):
    linear_name = gradient_linear_name
    cell, params, xs, carry = setup(linear_name, batch=3, time=8)
    lengths = jnp.array([8, 5, 2])
    padded = jnp.arange(8)[None, :, None] >= lengths[:, None, None]
    xs = jnp.where(padded, jnp.nan, xs)
    grad = grad_of(cell, xs.shape)
    for mode in MODES:
        for reverse in (False, True):
            (g_params, g_xs, g_carry), ys = grad(
                params, xs, carry, mode, lengths=lengths, reverse=reverse)
            for leaf in jax.tree.leaves((g_params, g_xs, g_carry)):
                assert np.all(np.isfinite(np.asarray(leaf))), (mode, reverse)
            assert np.all(np.asarray(g_xs)[np.asarray(jnp.broadcast_to(padded, xs.shape))] == 0)
            assert np.any(np.asarray(g_xs[1, :5]) != 0)
            assert np.all(np.asarray(ys)[np.asarray(padded[..., 0])] == 0)


def test_min_gru_and_lru_equal_generation_at_4096_steps():
    for name in ("min_gru", "lru"):
        cell, params, xs, carry = setup(name, batch=2, time=4096)
        want = generate(cell, params, xs, carry=carry)
        for mode in MODES:
            close(run(cell, params, xs, mode, carry=carry), want)


# ---- the runner's options ---------------------------------------------------------------

def test_classic_cells_accept_only_auto_and_sequential():
    cell = sn.lstm(4)
    params = cell.init(jax.random.key(0), F)
    xs = jnp.ones((2, 5, F))
    chex.assert_trees_all_equal(sn.scan(cell, params, xs, mode="sequential"),
                                sn.scan(cell, params, xs))
    for mode in ("chunked", "parallel"):
        with pytest.raises(ValueError, match=r"the 'lstm' cell is not linear .* modes "
                                             r"\('auto', 'sequential'\); got mode='" + mode):
            sn.scan(cell, params, xs, mode=mode)
    with pytest.raises(ValueError, match=r"mode must be one of \('auto', 'sequential', "
                                         r"'chunked', 'parallel'\); got 'fast'"):
        sn.scan(sn.min_gru(4), sn.min_gru(4).init(jax.random.key(0), F), xs, mode="fast")


def test_auto_mode_follows_the_measured_rule():
    cell = LINEAR_CELLS["min_gru"]
    for time in (16, 784, 65536):
        assert linear.resolve_mode("auto", cell, time, 64, 128, "cpu") is ScanMode.SEQUENTIAL
    assert linear.resolve_mode("auto", cell, 784, 64, 128, "gpu") is ScanMode.PARALLEL
    assert linear.resolve_mode("auto", sn.gru(3), 784, 64, 128, "gpu") is ScanMode.SEQUENTIAL
    assert linear.resolve_mode(ScanMode.PARALLEL, cell, 5, 1, 1) is ScanMode.PARALLEL


def test_inside_a_bidirectional_stack():
    model = sn.stack([LINEAR_CELLS["lru"], LINEAR_CELLS["min_gru"]], bidirectional=True)
    params = model.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (3, 13, F))
    lengths, resets = jnp.array([13, 8, 1]), jnp.zeros((3, 13), bool).at[0, 6].set(True)
    w = jax.random.normal(jax.random.key(2), (3, 13, model.output_size))

    @functools.partial(jax.jit, static_argnames="mode")
    def loss_and_grad(params, xs, mode):
        """``((loss, ys), grads)``: one compilation per mode gives outputs and gradients."""
        def loss(params, xs):
            carry, ys = model.apply(params, xs, lengths=lengths, resets=resets, mode=mode,
                                    chunk_size=4)
            total = jnp.sum(w * ys) + sum(jnp.sum(jnp.abs(c)) for c in jax.tree.leaves(carry))
            return total, ys
        return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs)

    def per_layer_generation(params, xs):
        """Each layer and direction through `generate`, the outputs concatenated."""
        for layer, cell in zip(params, model.cells, strict=True):
            _, fwd = generate(cell, layer["forward"], xs, lengths=lengths, resets=resets)
            _, bwd = generate(cell, layer["backward"], xs, lengths=lengths, resets=resets,
                              reverse=True)
            xs = jnp.concatenate([fwd, bwd], -1)
        return xs

    want = loss_and_grad(params, xs, "sequential")
    close(want[0][1], per_layer_generation(params, xs))
    for mode in ("chunked", "parallel"):
        close(loss_and_grad(params, xs, mode), want)


@pytest.mark.parametrize("mode", ["chunked", "parallel"])
def test_inside_the_fused_tbptt_epoch(mode):
    import optax

    from seqnets.training import create_train_state, softmax_cross_entropy
    from seqnets.training.tbptt import make_epoch_step, split_windows

    model = sn.stack(LINEAR_CELLS["min_gru"], num_layers=2)

    def loss_fn_in(mode):
        def loss_fn(params, carry, batch, key):
            x, y = batch
            carry, ys = model.apply(params["rnn"], x, carry=carry, mode=mode, chunk_size=3)
            return softmax_cross_entropy(ys @ params["w"], y), (carry, {})
        return loss_fn

    params = {"rnn": model.init(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (H, 2))}
    x = jax.random.normal(jax.random.key(1), (3, 24, F))
    windows = split_windows((x, (x[..., 0] > 0).astype(jnp.int32)), 8)
    optimizer = optax.adam(1e-2)
    results = []
    for m in ("sequential", mode):
        state = create_train_state(params, optimizer, jax.random.key(1))
        results.append(make_epoch_step(loss_fn_in(m), optimizer)(state, model.initial_carry(3),
                                                                  windows))
    (state_a, carry_a, metrics_a), (state_b, carry_b, metrics_b) = results
    # Three Adam updates amplify a 1e-7 gradient difference to ~lr * 1e-7 / sqrt(v): still
    # far below 1e-5 on the parameters.
    close((state_b.params, carry_b, metrics_b["loss"]),
          (state_a.params, carry_a, metrics_a["loss"]))


@pytest.mark.parametrize("name,mode", [
    ("lstm", "sequential"), ("min_gru", "chunked"),
    pytest.param("min_gru", "sequential", marks=pytest.mark.slow),
    pytest.param("lru", "parallel", marks=pytest.mark.slow)])
def test_checkpointed_scan_gives_the_same_gradients(name, mode):
    cell = sn.lstm(H) if name == "lstm" else LINEAR_CELLS[name]
    params = cell.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (3, 23, F))
    carry = jax.tree.map(lambda c: c + 0.5, cell.initial_carry(3))
    kwargs = {"lengths": jnp.array([23, 11, 4]),
              "resets": jnp.zeros((3, 23), bool).at[0, 9].set(True), "mode": mode}
    w = jax.random.normal(jax.random.key(2), (3, 23, H))

    @functools.partial(jax.jit, static_argnames=("checkpoint", "reverse"))
    def grads(params, xs, carry, checkpoint, reverse):
        def loss(params, xs, carry):
            carry, ys = sn.scan(cell, params, xs, carry=carry, checkpoint=checkpoint,
                                reverse=reverse, **kwargs)
            return jnp.sum(w * ys) + sum(jnp.sum(jnp.abs(c)) for c in jax.tree.leaves(carry))
        return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry)

    for reverse, blocks in ((False, (5, 40)), (True, (5,))):
        want = grads(params, xs, carry, None, reverse)
        for k in blocks:  # 23 = 4 * 5 + 3: the last block is padded; 40 > 23: one block
            close(grads(params, xs, carry, k, reverse), want)


def test_checkpoint_must_be_a_positive_int():
    cell = sn.lstm(3)
    params = cell.init(jax.random.key(0), F)
    with pytest.raises(ValueError, match=r"checkpoint must be None or a positive int .* got 0"):
        sn.scan(cell, params, jnp.ones((1, 4, F)), checkpoint=0)


def test_checkpointing_cuts_the_memory_of_a_training_step():
    """XLA's own accounting of the compiled gradient: blocks of 64 at T = 4,096."""
    cell = sn.lstm(32)
    params = cell.init(jax.random.key(0), 8)
    xs = jnp.ones((4, 4096, 8))

    def temp_bytes(checkpoint):
        grad = jax.grad(lambda p: jnp.sum(sn.scan(cell, p, xs, checkpoint=checkpoint)[1][:, -1]))
        return jax.jit(grad).lower(params).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(64) * 4 < temp_bytes(None)


@pytest.mark.parametrize("name", [
    "min_gru", "lru", pytest.param("min_lstm", marks=pytest.mark.slow),
    pytest.param("rg_lru", marks=pytest.mark.slow)])
def test_no_overflow_or_nan_at_65536_steps(name):
    """Long inputs with large gates; every mode stays finite and agrees with the others."""
    cell = LINEAR_CELLS[name]
    params = cell.init(jax.random.key(0), F)
    xs = 3.0 * jax.random.normal(jax.random.key(1), (1, 65536, F))

    @functools.partial(jax.jit, static_argnames="mode")
    def value_and_grad(params, mode):
        def loss(params):
            carry, ys = sn.scan(cell, params, xs, mode=mode)
            return jnp.mean(ys**2) + jnp.sum(jnp.abs(state_of(carry)))
        return jax.value_and_grad(loss)(params)

    want = value_and_grad(params, "sequential")
    for leaf in jax.tree.leaves(want):
        assert np.all(np.isfinite(np.asarray(leaf)))
    # The parameter gradients are sums over 65,536 steps: reassociating them costs about
    # sqrt(65,536) * 6e-8 = 1.5e-5 relative, hence 1e-4 here rather than 1e-5.
    for mode in ("chunked", "parallel"):
        close(value_and_grad(params, mode), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["chunked", "parallel"])
def test_shard_map_step_matches_one_device(mode):
    """One SGD step of an LRU + minGRU stack, batch split over the 8 CPU devices."""
    import optax

    from seqnets import parallel
    from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy

    model = sn.stack([LINEAR_CELLS["lru"], LINEAR_CELLS["min_gru"]])

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x, mode=mode, chunk_size=4)
        return softmax_cross_entropy(ys[:, -1] @ params["w"], y), {}

    params = {"rnn": model.init(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (H, 3))}
    batch = (jax.random.normal(jax.random.key(1), (16, 10, F)),
             jax.random.randint(jax.random.key(3), (16,), 0, 3))
    optimizer = optax.sgd(0.1)
    one, _ = make_train_step(loss_fn, optimizer, donate=False)(
        create_train_state(params, optimizer, jax.random.key(1)), batch)
    mesh = parallel.data_mesh()
    state = parallel.replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
    many, _ = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)(
        state, parallel.shard_batch(batch, mesh))
    # One step: the 8 partial gradient sums are added in another order, ~1e-7 relative.
    close(jax.device_get(many.params), jax.device_get(one.params))
