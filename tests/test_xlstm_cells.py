"""The xLSTM cells and blocks against references written from the paper's equations.

`sn.slstm`, `sn.mlstm`, `seqnets.layers.mlstm_block` and `seqnets.layers.slstm_block`
are checked against NumPy float64 loops of Beck et al. (2024)'s equations, row by row and
step by step, **without the stabiliser**: the reference keeps the paper's states ``c, n``
(``C, n``) as they are, so agreement shows that the stabiliser changes nothing but the
range of the numbers. The reference tracks ``m`` only to express the carry in the cells'
stabilised units (``c exp(-m)``) and, for the mLSTM, the kernel's ``eps``, which is added
in those units. The cell's own step (``cell.apply`` one token at a time) meets it too,
and the gradients of every compiled program meet the reference's central differences.

Tolerances. Float32 against float64: each output is a few dozen float32 operations per
step over 12 steps and sums of at most 16 terms, with ``|y|`` of order 1-5 (up to 40 for
the blocks, whose residuals add up), so the rounding error is a few 1e-7 relative
(measured: 2e-7 for the sLSTM, 8e-7 for the mLSTM, 1e-6 relative for the blocks); 1e-5
(absolute and relative) leaves a margin of about 10 and still catches a mask off by one
step, a tap of the convolution in the wrong place or a gate read from the wrong input
(each moves outputs by O(0.1-1); a head-norm eps of 1e-4 for 1e-5 moved them by 0.46).
Gradients: `check_reference_slopes`. The TBPTT and shard_map tests compare two float32 programs of
the same sums in other orders: 1e-5.

Test time: one compiled program per configuration (forward, carry handoff and gradients
share it), random numbers from NumPy, the test's own programs compiled with LLVM's cheap
passes (`FAST`); the default run checks every cell, the slow one (``-m slow``) the other
modes, checkpoints and stacks.
"""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import seqnets as sn
from seqnets.cells.slstm import SLSTMState
from seqnets.layers import mlstm_block, slstm_block
from seqnets.ops.masks import where_rows
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows

W, NH, F, B, T = 8, 2, 3, 3, 12
CELLS = {
    "slstm": (sn.slstm(W, NH), F),
    "slstm_exp": (sn.slstm(W, NH, forget_gate="exp"), F),
    "mlstm": (sn.mlstm(W, NH), F),
    "mlstm_block": (mlstm_block(W, NH, qkv_block_size=2), W),
    "slstm_block": (slstm_block(W, NH), W),
}
LENGTHS = jnp.array([T, 7, 0])
RESETS = jnp.zeros((B, T), bool).at[0, 5].set(True).at[0, 9].set(True).at[1, 2].set(True)


def close(got, want, atol=1e-5, rtol=1e-5):
    chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- the references (NumPy)

def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))  # no overflow at |x| = 1000


def log_sigmoid(x):
    return -np.logaddexp(0, -x)


def layer_norm(x, scale, eps=1e-5):
    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * scale


def head_norm(h, scale, heads):
    return layer_norm(h.reshape(heads, -1), 1.0).reshape(-1) * scale


def silu(x):
    return x * sigmoid(x)


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def slstm_core(p, pre_x, state, heads, exp_forget):
    """One sLSTM step (section 2.2), unstabilised: ``state = (c, n, h, m)``, ``c, n`` as in
    the paper; ``m`` only for the carry's units (fresh where ``n = 0``)."""
    c, n, h, m = state
    d = len(c) // heads
    rec = np.concatenate([h[g * d:(g + 1) * d] @ p["r"][g] for g in range(heads)])
    i, f, z, o = (pre_x + p["b"] + rec).reshape(heads, 4, d).transpose(1, 0, 2).reshape(4, -1)
    log_f = f if exp_forget else log_sigmoid(f)
    m = np.where(n == 0, i, np.maximum(log_f + m, i))
    c = np.exp(log_f) * c + np.exp(i) * np.tanh(z)
    n = np.exp(log_f) * n + np.exp(i)
    h = sigmoid(o) * c / n
    return c, n, h, m


def mlstm_core(q, k, v, i, f, state, eps=1e-6):
    """One mLSTM step (section 2.3), unstabilised, per head: ``q, k, v (NH, d)``, ``i, f
    (NH,)``, ``state = (C, n, m)``; ``m`` for the kernel's eps, added in units exp(-m)."""
    C, n, m = state
    m = np.maximum(log_sigmoid(f) + m, i)
    C = sigmoid(f)[:, None, None] * C + np.exp(i)[:, None, None] * k[:, :, None] * v[:, None, :]
    n = sigmoid(f)[:, None] * n + np.exp(i)[:, None] * k
    q = q / np.sqrt(q.shape[-1])
    den = np.maximum(np.abs((q * n).sum(-1)), 1.0) + eps * np.exp(m)
    return np.einsum("hk,hkv->hv", q, C) / den[:, None], (C, n, m)


def conv_step(x, buffer, w, b):
    window = np.concatenate([buffer, x[None]])  # oldest first: w[-1] reads x_t
    return (window * w).sum(0) + b, window[1:]


def reference(name, params, xs, carry, valid, reset):
    """``name``'s cell over ``xs (batch, time, input)`` in float64, from ``carry`` (the
    cell's carry); returns ``(carry, ys)`` in the cell's units, ys zero at padded steps."""
    cell = CELLS[name][0]
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    xs = np.asarray(xs, np.float64)
    carry = jax.tree.map(lambda a: np.array(a, np.float64), carry)
    heads, H = NH, cell.hidden_size
    ys = np.zeros((*xs.shape[:2], H))
    for row in range(xs.shape[0]):
        new = row_reference(name, p, xs[row], take(carry, row), valid[row], reset[row], heads,
                            ys[row])
        for leaf, value in zip(jax.tree.leaves(carry), jax.tree.leaves(new), strict=True):
            leaf[row] = value
    return carry, ys


def row_reference(name, p, xs, carry, valid, reset, heads, ys):
    """One row of `reference`; writes ``ys`` and returns the row's final carry."""
    if name.startswith("slstm"):
        cell_carry = carry if name != "slstm_block" else carry["state"]
        c, n, m, h = cell_carry
        state = (c * np.exp(m), n * np.exp(m), h, m)
    else:
        C, n, m = carry if name == "mlstm" else carry["state"]
        state = (C * np.exp(m)[:, None, None], n * np.exp(m)[:, None], m)
    buffer = carry["conv"] if isinstance(carry, dict) else None
    for t in range(len(xs)):
        if not valid[t]:
            continue
        if reset[t]:
            state = jax.tree.map(np.zeros_like, state)
            buffer = None if buffer is None else np.zeros_like(buffer)
        x = xs[t]
        if name in ("slstm", "slstm_exp"):
            state = slstm_core(p, x @ p["w_x"], state, heads, name == "slstm_exp")
            ys[t] = state[2]
        elif name == "mlstm":
            H = len(p["norm"])
            q, k, v, gates, o = np.split(x @ p["w_x"] + p["b"], [H, 2 * H, 3 * H, 3 * H + 2 * heads])
            i, f = np.split(gates, 2)
            h, state = mlstm_core(*(a.reshape(heads, -1) for a in (q, k, v)), i, f, state)
            ys[t] = sigmoid(o) * head_norm(h.reshape(-1), p["norm"], heads)
        elif name == "mlstm_block":
            u, z = np.split(layer_norm(x, p["norm"]) @ p["w_up"], 2)
            c, buffer = conv_step(u, buffer, p["conv_w"], p["conv_b"])
            c = silu(c)
            blocks = lambda a, w: np.einsum("gi,gio->go", a.reshape(len(w), -1), w).reshape(-1)  # noqa: E731
            q, k, v = blocks(c, p["w_q"]), blocks(c, p["w_k"]), blocks(u, p["w_v"])
            i, f = np.split(np.concatenate([q, k, v]) @ p["w_gates"] + p["b_gates"], 2)
            h, state = mlstm_core(*(a.reshape(heads, -1) for a in (q, k, v)), i, f, state)
            out = (head_norm(h.reshape(-1), p["out_norm"], heads) + p["skip"] * c) * silu(z)
            ys[t] = x + out @ p["w_down"]
        else:  # slstm_block
            a = layer_norm(x, p["norm"])
            c, buffer = conv_step(a, buffer, p["conv_w"], p["conv_b"])
            c = silu(c)
            w = p["cell"]["w_x"].reshape(len(x), heads, 4, -1)
            pre = np.concatenate([np.einsum("e,ehgd->hgd", c, w[:, :, :2]),
                                  np.einsum("e,ehgd->hgd", a, w[:, :, 2:])], axis=1)
            state = slstm_core(p["cell"], pre.reshape(-1), state, heads, False)
            y = x + head_norm(state[2], p["out_norm"], heads)
            gate, up = np.split(layer_norm(y, p["mlp_norm"]) @ p["w_up"], 2)
            ys[t] = y + (gelu(gate) * up) @ p["w_down"]
    if name.startswith("slstm"):
        c, n, h, m = state
        cell_carry = SLSTMState(c * np.exp(-m), n * np.exp(-m), m, h)
        return cell_carry if name != "slstm_block" else {"conv": buffer, "state": cell_carry}
    C, n, m = state
    mlstm_carry = (C * np.exp(-m)[:, None, None], n * np.exp(-m)[:, None], m)
    return mlstm_carry if name == "mlstm" else {"conv": buffer, "state": mlstm_carry}


def apply_loop(cell, params, xs, carry, valid, reset):
    """``cell.apply`` one token at a time: the definition every mode meets."""
    apply = jax.jit(cell.apply, compiler_options=FAST)
    initial = cell.initial_carry(xs.shape[0])
    ys = []
    for t in range(xs.shape[1]):
        carry = where_rows(reset[:, t], initial, carry)
        new, y = apply(params, carry, xs[:, t])
        carry = where_rows(valid[:, t], new, carry)
        ys.append(jnp.where(valid[:, t, None], y, 0.0))
    return carry, jnp.stack(ys, 1)


# ---------------------------------------------------------------- inputs

# Random numbers come from NumPy, and the cells' init from a key of XLA's own generator
# ("rbg"): the default threefry hash is a program to compile for every shape drawn, which
# took longer than the cells' programs here.
def key(seed):
    return jax.random.key(seed, impl="rbg")


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# The test's own programs are compiled without LLVM's expensive passes: half the compile
# time, the same XLA graph (results move by float32 roundings, 1e-6, far inside the
# tolerances). The library's train steps keep their default options.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def init(cell, input_size):
    return jax.jit(cell.init, static_argnums=1, compiler_options=FAST)(key(0), input_size)


@functools.lru_cache
def inputs(name):
    """Parameters with every leaf perturbed (the initial recurrent and gate weights are
    zero), input gates spread over about ±10, inputs, and a carry of every kind of row:
    row 1 fresh (zeros), the others random. Made once per cell."""
    cell, f = CELLS[name]
    leaves, tree = jax.tree.flatten(init(cell, f))
    params = tree.unflatten([np.asarray(a) + 0.5 * normal(100 + j, a.shape)
                             for j, a in enumerate(leaves)])
    if name in ("slstm", "slstm_exp"):
        params["w_x"].reshape(f, NH, 4, -1)[:, :, 0] *= 8.0
    if name == "mlstm":
        params["w_x"][:, 3 * W:3 * W + NH] *= 8.0
    xs = normal(2, (B, T, f))
    leaves, tree = jax.tree.flatten(cell.initial_carry(B))
    carry = tree.unflatten([normal(200 + j, a.shape) for j, a in enumerate(leaves)])
    if name.startswith("slstm"):
        state = carry if name != "slstm_block" else carry["state"]
        n = 1 + np.abs(state.n)  # a carry the cell can have: n >= 1, |c| <= n, |h| <= 1
        state = SLSTMState(n * np.tanh(state.c), n, state.m, 0.5 * np.tanh(state.h))
        carry = state if name != "slstm_block" else {**carry, "state": state}
    for leaf in jax.tree.leaves(carry):
        leaf[1] = 0.0
    return jax.tree.map(jnp.asarray, (params, xs, carry))


def take(tree, index):
    """Every leaf of ``tree`` indexed on its leading axis."""
    return jax.tree.map(lambda a: a[index], tree)


def valid_mask(lengths=LENGTHS):
    return np.arange(T)[None] < np.asarray(lengths)[:, None]


@functools.partial(jax.jit, static_argnames=("name", "mode", "reverse", "time_major"),
                   compiler_options=FAST)
def run(name, params, xs, carry, lengths, resets, mode, reverse=False, time_major=False):
    return sn.scan(CELLS[name][0], params, xs, carry=carry, lengths=lengths, resets=resets,
                   mode=mode, reverse=reverse, time_major=time_major, chunk_size=4)


LOSS_W = normal(9, (B, T, W)).astype(np.float64)


@functools.partial(jax.jit, static_argnames=("name", "mode", "checkpoint"),
                   compiler_options=FAST)
def loss_grad(name, params, xs, carry, lengths, resets, mode, checkpoint):
    """``(carry, ys)`` of `sn.scan` (chunks of 4) and the gradients of `loss` with respect to
    params, xs and carry: one program gives the forward check, the carry handoff (run again
    from the carry it returned) and the gradients."""

    def loss_fn(params, xs, carry):
        carry, ys = sn.scan(CELLS[name][0], params, xs, carry=carry, lengths=lengths,
                            resets=resets, mode=mode, chunk_size=4, checkpoint=checkpoint)
        return loss(carry, ys, jnp), (carry, ys)

    (_, out), g = jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
    return out, g


def loss(carry, ys, xp):
    """A loss that reads every output and every leaf of the final carry."""
    return xp.sum(LOSS_W * ys) + sum(xp.sum(xp.tanh(c)) for c in jax.tree.leaves(carry))


def finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def check_reference_slopes(name, params, xs, carry, grads):
    """Each leaf's gradient, projected on a random direction, against the central
    difference of the float64 reference's `loss` along it.

    The carry's fresh row (row 1, zeros) gets no direction for the sLSTM: its ``n = 0``
    marks "nothing stored", which the cell reads as a fresh state (gradient 0 to ``c, n``
    there), while the reference's states move smoothly away from 0.

    Tolerance: float32 rounds each gradient entry relative to the O(1-10) products it
    sums, however small the sum: 1e-5 of ``max(sum |g d|, 1)``, the error of a few hundred
    roundings of 6e-8 with a margin; central differences in float64 at step 1e-5 err by
    ~1e-9. Measured in the default cases: at most 4.7e-6 (mlstm_block), 1.4e-6 (mlstm),
    5e-7 (the sLSTMs). A gradient wrong anywhere moves the projection by far more: a
    stop_gradient on the sLSTM's ``n`` in ``h = o c / n`` gave 3.3e-2."""
    paths, tree = jax.tree_util.tree_flatten_with_path(grads)
    rng = np.random.default_rng(0)
    valid, resets = valid_mask(), np.asarray(RESETS)
    base = jax.tree.map(lambda a: np.asarray(a, np.float64),
                        (params, jnp.nan_to_num(xs), carry))
    worst = 0.0
    for index, (path, g) in enumerate(paths):
        d = [np.zeros(np.shape(leaf)) for _, leaf in paths]
        d[index] = rng.normal(size=np.shape(g))
        if name.startswith("slstm") and jax.tree_util.keystr(path).startswith("[2]"):
            d[index][1] = 0.0
        direction = jax.tree.unflatten(tree, d)

        def at(sign, direction=direction):
            p, x, c = jax.tree.map(lambda a, u: a + sign * 1e-5 * u, base, direction)
            return loss(*reference(name, p, x, c, valid, resets), np)

        slope = (at(1) - at(-1)) / 2e-5
        terms = np.asarray(g, np.float64) * d[index]
        error = abs(terms.sum() - slope) / max(np.abs(terms).sum(), 1.0)
        worst = max(worst, error)
        assert error <= 1e-5, (jax.tree_util.keystr(path), terms.sum(), slope)
    return worst


# ---------------------------------------------------------------- the tests

def test_initialisation_follows_nx_ai():
    p = init(sn.slstm(W, NH), F)
    b = p["b"].reshape(NH, 4, W // NH)
    np.testing.assert_allclose(b[:, 1], [[5.0, 5 - 12 / 3**0.3, 5 - 12 * (2 / 3)**0.3, -7.0]] * NH,
                               rtol=1e-6)
    np.testing.assert_array_equal(b[:, [0, 2, 3]], 0.0)
    np.testing.assert_array_equal(p["r"], 0.0)
    assert p["r"].shape == (NH, W // NH, 4 * W // NH)
    exp_b = init(sn.slstm(W, NH, forget_gate="exp"), F)["b"]
    np.testing.assert_allclose(jnp.exp(exp_b.reshape(NH, 4, -1)[:, 1]), jax.nn.sigmoid(b[:, 1]),
                               rtol=1e-6)
    p = init(sn.mlstm(W, NH), F)
    np.testing.assert_array_equal(p["w_x"][:, 3 * W:3 * W + 2 * NH], 0.0)
    np.testing.assert_allclose(p["b"][3 * W + NH:3 * W + 2 * NH], [3.0, 6.0])
    p = init(mlstm_block(W, NH, qkv_block_size=2), W)
    np.testing.assert_allclose(p["b_gates"][NH:], [3.0, 6.0])
    np.testing.assert_array_equal(p["skip"], 1.0)
    assert p["w_q"].shape == (8, 2, 2) and p["conv_w"].shape == (4, 2 * W)
    p = init(slstm_block(W, NH, block_index=1, depth=3), W)
    b = p["cell"]["b"].reshape(NH, 4, -1)[0, 1]
    np.testing.assert_allclose(b, 5 - 12 * (np.arange(4) / 3) ** (0.3 + 1.3 / 2), rtol=1e-6)
    assert sn.slstm(32) == sn.slstm(32) and sn.mlstm(32) == sn.mlstm(32)  # memoised
    # defaults from the width alone: 4 heads of 8 units
    assert jax.eval_shape(lambda: sn.slstm(32).init(jax.random.key(0), 5))["r"].shape == (4, 8, 32)
    assert jax.eval_shape(lambda: sn.mlstm(32).init(jax.random.key(0), 5))["w_x"].shape == (5, 136)


def case(name, mode, checkpoint, slow=False):
    return pytest.param(name, mode, checkpoint, id=f"{name}-{mode}-{checkpoint}",
                        marks=[pytest.mark.slow] if slow else [])


# One compiled program each (forward and gradients). The default run covers every cell,
# the chunked mLSTM kernel with and without checkpointing (blocks of 2 chunks of 4), the
# sLSTM's loop with and without (blocks of 5 steps); the other combinations are slow (the
# sequential mLSTM kernel meets its naive reference in tests/test_ops_mlstm.py, and the
# cell's own step, token by token, meets the reference below).
CASES = [
    case("slstm", "sequential", 5),
    case("mlstm", "chunked", 8),
    case("mlstm_block", "chunked", None),
    case("slstm_block", "sequential", None),
    case("slstm", "sequential", None, slow=True),
    case("slstm_exp", "sequential", 5, slow=True),
    case("mlstm", "chunked", None, slow=True),
    case("mlstm", "sequential", None, slow=True),
    case("mlstm", "sequential", 5, slow=True),
    case("mlstm_block", "chunked", 8, slow=True),
    case("mlstm_block", "sequential", 5, slow=True),
    case("slstm_block", "sequential", 5, slow=True),
]


@pytest.mark.parametrize("name,mode,checkpoint", CASES)
def test_every_mode_equals_the_reference_forward_and_gradients(name, mode, checkpoint):
    """From a random carry, over lengths, resets and NaN at the padded inputs, then on from
    the carry it returned (a second window, the same program), against the reference over
    both windows; the first window's gradients for params, inputs and carry: finite,
    exactly zero for the padded inputs, and equal to the reference's slopes."""
    params, xs, carry = inputs(name)
    xs = jnp.where(valid_mask()[..., None], xs, jnp.nan)
    more = normal(7, xs.shape)
    full = jnp.full((B,), T)
    valid = np.concatenate([valid_mask(), np.ones((B, T), bool)], 1)
    reset = np.concatenate([RESETS, RESETS], 1)
    want_carry, want_ys = reference(name, params, np.concatenate([jnp.nan_to_num(xs), more], 1),
                                    carry, valid, reset)
    (handed, first), g = loss_grad(name, params, xs, carry, LENGTHS, RESETS, mode, checkpoint)
    (got_carry, second), _ = loss_grad(name, params, more, handed, full, RESETS, mode, checkpoint)
    close(jnp.concatenate([first, second], 1), want_ys)
    close(got_carry, want_carry)
    assert finite(g)
    np.testing.assert_array_equal(np.asarray(g[1])[~valid_mask()], 0.0)
    check_reference_slopes(name, params, xs, carry, g)


@pytest.mark.parametrize("name", ["slstm", "mlstm", "mlstm_block", "slstm_block"])
def test_reverse_time_major_and_the_cells_own_step_equal_the_reference(name):
    """Reversed: the reference on each row's valid steps reversed, its resets moved to the
    flipped position of the step before each episode start. Forward: ``cell.apply`` one
    token at a time (the definition every mode meets)."""
    params, xs, carry = inputs(name)
    got_carry, got_ys = run(name, params, jnp.swapaxes(xs, 0, 1), carry, LENGTHS, RESETS.T,
                            "auto", reverse=True, time_major=True)
    got_ys = jnp.swapaxes(got_ys, 0, 1)
    reset = np.asarray(RESETS)
    for row in range(B):
        n = int(LENGTHS[row])
        flipped = np.zeros((1, n), bool)
        flipped[0, [n - t for t in np.flatnonzero(reset[row, :n]) if t > 0]] = True
        rows = slice(row, row + 1)
        want_carry, want_ys = reference(name, params, xs[rows, :n][:, ::-1], take(carry, rows),
                                        np.ones((1, n), bool), flipped)
        close(got_ys[row, :n], want_ys[0, ::-1])
        close(take(got_carry, rows), want_carry)
        np.testing.assert_array_equal(got_ys[row, n:], 0.0)
    close(apply_loop(CELLS[name][0], params, xs, carry, valid_mask(), reset),
          reference(name, params, xs, carry, valid_mask(), reset))


def test_an_empty_sequence_leaves_the_carry():
    for name in ("slstm", "mlstm_block"):
        params, _, carry = inputs(name)
        got_carry, ys = sn.scan(CELLS[name][0], params, jnp.zeros((B, 0, CELLS[name][1])),
                                carry=carry)
        assert ys.shape == (B, 0, W)
        close(got_carry, carry, atol=0, rtol=0)


def tbptt_matches_the_window_loop(model, mode="auto"):
    """Two windows of 6 steps by the fused TBPTT epoch (one program: a scan of updates,
    the carry handed from window to window) equal the jitted window step called twice."""
    params = {"rnn": init(model, W), "w": normal(2, (model.output_size, 2))}
    x = normal(1, (2, 12, W))
    windows = split_windows((x, (x[..., 0] > 0).astype(jnp.int32)), 6)

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, ys = model.apply(params["rnn"], x, carry=carry, mode=mode, chunk_size=4)
        return softmax_cross_entropy(ys @ params["w"], y), (carry, {})

    optimizer = optax.sgd(0.3)
    state = create_train_state(params, optimizer, key(1))
    state_a, carry_a, metrics_a = make_epoch_step(loss_fn, optimizer)(
        state, model.initial_carry(2), windows)
    step = make_window_step(loss_fn, optimizer)
    state_b, carry_b = create_train_state(params, optimizer, key(1)), model.initial_carry(2)
    losses = []
    for k in range(2):
        state_b, carry_b, metrics = step(state_b, carry_b, take(windows, k))
        losses.append(metrics["loss"])
    close((state_b.params, carry_b, jnp.stack(losses)), (state_a.params, carry_a, metrics_a["loss"]))
    assert float(jnp.abs(state_a.params["w"] - params["w"]).max()) > 1e-3  # it trained


def test_both_cells_in_a_bidirectional_stack_in_the_fused_tbptt_epoch():
    """The sequential kernels: the cheaper programs to compile; the chunked one hands its
    carry on in the first test above, and in the fused epoch in the slow test below."""
    tbptt_matches_the_window_loop(sn.stack([sn.slstm(W, NH), sn.mlstm(W, NH)],
                                           bidirectional=True), mode="sequential")


@pytest.mark.slow
def test_the_fused_tbptt_epoch_equals_the_window_loop_in_a_stack_of_all_four():
    tbptt_matches_the_window_loop(sn.stack([
        mlstm_block(W, NH, qkv_block_size=2), slstm_block(W, NH), sn.slstm(W, NH),
        sn.mlstm(W, NH)]))


def shard_map_matches_one_device(model):
    """One SGD step, the batch of 8 split over the 8 CPU devices, equals the step on one."""
    from seqnets import parallel

    params = {"rnn": init(model, 32), "w": normal(2, (model.output_size, 2))}

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x, chunk_size=4)
        return softmax_cross_entropy(ys[:, -1] @ params["w"], y), {}

    batch = normal(1, (8, 6, 32)), np.arange(8) % 2
    optimizer = optax.sgd(0.1)
    one, _ = make_train_step(loss_fn, optimizer, donate=False)(
        create_train_state(params, optimizer, key(1)), batch)
    mesh = parallel.data_mesh()
    state = parallel.replicate(create_train_state(params, optimizer, key(1)), mesh)
    many, _ = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)(
        state, parallel.shard_batch(batch, mesh))
    assert finite(one.params)
    assert float(jnp.abs(one.params["w"] - params["w"]).max()) > 1e-4  # it trained
    close(jax.device_get(many.params), jax.device_get(one.params))


@pytest.mark.slow  # the runner's shard_map contract runs by default in test_matrix_cells
def test_the_slstm_block_with_defaults_under_shard_map_matches_one_device():
    """Defaults from the width alone (32). The block runs the sLSTM's loop itself and builds
    its resets' zero state from the carry (varying under shard_map); the other cells run
    under shard_map in the slow test below."""
    shard_map_matches_one_device(sn.stack([slstm_block(32)]))


@pytest.mark.slow
def test_default_cells_in_a_bidirectional_stack_under_shard_map_match_one_device():
    shard_map_matches_one_device(sn.stack(
        [mlstm_block(32), slstm_block(64), sn.slstm(32), sn.mlstm(32)], bidirectional=True))


@pytest.mark.parametrize("name", ["slstm", "slstm_exp"])
def test_slstm_outputs_do_not_move_when_every_input_gate_shifts_by_1000(name):
    """Adding ``shift`` (+-1000) to every input-gate pre-activation (and to the carry's
    ``m``) multiplies the paper's ``c`` and ``n`` alike by ``exp(shift)``: ``h`` must not
    move. Only the stabiliser keeps ``exp(+-1000)`` out of float32; without the
    fresh-state rule a reset at ``i~ = -1000`` would give ``h = 0 / 0``. Unshifted, the
    exponential forget gate meets the reference to 1e-5 as every mode does.

    Tolerance: near 1000, float32 holds ``i~`` and ``m`` only to 3e-5 (half their ulp),
    which ``exp(i~ - m)`` turns into a relative error of each gate; ``h`` is a weighted
    mean of values in [-1, 1], so it moves by a few 1e-5: 2e-4 here, and 1e-6 relative
    on ``m`` itself. A wrong stabiliser moves ``h`` by O(0.1) or makes it NaN."""
    params, xs, carry = inputs(name)
    want_carry, want_ys = reference(name, params, xs, carry, valid_mask(), np.asarray(RESETS))
    close(run(name, params, xs, carry, LENGTHS, RESETS, "sequential"), (want_carry, want_ys))
    for shift in (1000.0, -1000.0):
        shifted = {**params, "b": params["b"].reshape(NH, 4, -1).at[:, 0].add(shift).reshape(-1)}
        moved = carry._replace(m=carry.m + shift)
        got_carry, got_ys = run(name, shifted, xs, moved, LENGTHS, RESETS, "sequential")
        close(got_ys, want_ys, atol=2e-4, rtol=2e-4)
        # the stored c, n are unchanged, and m moved by the shift
        close(got_carry._replace(m=None), want_carry._replace(m=None), atol=2e-4, rtol=2e-4)
        close(got_carry.m, want_carry.m + shift, rtol=1e-6)
        if name == "slstm":  # the program of the first case above: no new compilation
            assert finite(loss_grad(name, shifted, xs, moved, LENGTHS, RESETS, "sequential", 5))


@pytest.mark.parametrize("name,mode,checkpoint", [("slstm", "sequential", 5),
                                                  ("mlstm", "chunked", 8)])
def test_extreme_gate_pre_activations_stay_finite_and_exact(name, mode, checkpoint):
    """Forget and input gates at +-30 in every head (the float32 exp overflows from 89
    and the paper's unstabilised states reach exp(360) here) against the float64 reference;
    the gradients finite. The programs of the first cases above."""
    params, xs, carry = inputs(name)
    signs = jnp.array([1.0, -1.0] * (NH // 2))
    if name == "slstm":
        b = params["b"].reshape(NH, 4, -1)
        b = b.at[:, 0].set(30 * signs[:, None]).at[:, 1].set(-30 * signs[:, None])
        params = {**params, "b": b.reshape(-1)}
    else:
        params = {**params, "b": params["b"].at[3 * W:3 * W + NH].set(30 * signs)
                  .at[3 * W + NH:3 * W + 2 * NH].set(-30 * signs)}
    want_carry, want_ys = reference(name, params, xs, carry, valid_mask(), np.asarray(RESETS))
    (got_carry, got_ys), g = loss_grad(name, params, xs, carry, LENGTHS, RESETS, mode, checkpoint)
    close(got_ys, want_ys)
    close(got_carry, want_carry)
    assert finite(g)


def test_bad_configurations_and_inputs_name_the_fix():
    with pytest.raises(ValueError, match="num_heads=3 must divide hidden_size=8"):
        sn.slstm(8, 3)
    with pytest.raises(ValueError, match="num_heads=3 must divide hidden_size=8"):
        sn.mlstm(8, 3)
    with pytest.raises(ValueError, match="forget_gate must be one of"):
        sn.slstm(8, forget_gate="tanh")
    with pytest.raises(ValueError, match="qkv_block_size=3 must divide"):
        mlstm_block(8, qkv_block_size=3)
    with pytest.raises(ValueError, match="conv_size must be 0"):
        slstm_block(8, conv_size=1)
    with pytest.raises(ValueError, match="block_index must be an int in"):
        slstm_block(8, block_index=2, depth=2)
    with pytest.raises(ValueError, match="input size must be the block's width 8"):
        mlstm_block(8).init(jax.random.key(0), 5)
    cell = sn.slstm(8)
    params = init(cell, 3)
    with pytest.raises(ValueError, match="runs only in modes"):
        sn.scan(cell, params, jnp.ones((2, 4, 3)), mode="chunked")
    with pytest.raises(ValueError, match="carry has the wrong structure"):
        sn.scan(cell, params, jnp.ones((2, 4, 3)), carry=tuple(cell.initial_carry(2)))
