"""The xLSTM cells and blocks against references written from the paper's equations.

`sn.slstm`, `sn.mlstm`, `seqnets.layers.mlstm_block` and `seqnets.layers.slstm_block`
are checked against NumPy float64 loops of Beck et al. (2024)'s equations, row by row and
step by step, **without the stabiliser**: the reference keeps the paper's states ``c, n``
(``C, n``) as they are, so agreement shows that the stabiliser changes nothing but the
range of the numbers. The reference tracks ``m`` only to express the carry in the cells'
stabilised units (``c exp(-m)``) and, for the mLSTM, the kernel's ``eps``, which is added
in those units. Every mode also meets ``cell.apply`` one token at a time.

Tolerances. Float32 against float64: each output is a few dozen float32 operations per
step over 12 steps and sums of at most 16 terms, with ``|y|`` of order 1-5, so the
rounding error is a few 1e-7 relative; 1e-5 (absolute and relative) leaves a margin of
about 10 and still catches a mask off by one step, a tap of the convolution in the wrong
place or a gate read from the wrong input (each moves outputs by O(0.1-1)). Modes and
checkpointing reassociate float32 sums in the gradients, whose terms reach O(10): 1e-4.
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
MODES = {name: (("sequential",) if cell.family == "nonlinear" else ("sequential", "chunked"))
         for name, (cell, _) in CELLS.items()}
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
    apply = jax.jit(cell.apply)
    initial = cell.initial_carry(xs.shape[0])
    ys = []
    for t in range(xs.shape[1]):
        carry = where_rows(reset[:, t], initial, carry)
        new, y = apply(params, carry, xs[:, t])
        carry = where_rows(valid[:, t], new, carry)
        ys.append(jnp.where(valid[:, t, None], y, 0.0))
    return carry, jnp.stack(ys, 1)


# ---------------------------------------------------------------- inputs

def inputs(name, key=0):
    """Parameters with every leaf perturbed (the initial recurrent and gate weights are
    zero), input gates spread over about ±10, inputs, and a carry of every kind of row:
    row 1 fresh (zeros), the others random."""
    cell, f = CELLS[name]
    params = cell.init(jax.random.key(key), f)
    leaves, tree = jax.tree.flatten(params)
    noise = jax.random.split(jax.random.key(key + 1), len(leaves))
    params = tree.unflatten([a + 0.5 * jax.random.normal(k, a.shape)
                             for a, k in zip(leaves, noise, strict=True)])
    if name in ("slstm", "slstm_exp"):
        w = params["w_x"].reshape(f, NH, 4, -1)
        params["w_x"] = w.at[:, :, 0].multiply(8.0).reshape(f, -1)
    if name == "mlstm":
        params["w_x"] = params["w_x"].at[:, 3 * W:3 * W + NH].multiply(8.0)
    xs = jax.random.normal(jax.random.key(key + 2), (B, T, f))
    ks = iter(jax.random.split(jax.random.key(key + 3), 8))
    carry = jax.tree.map(lambda a: jax.random.normal(next(ks), a.shape), cell.initial_carry(B))
    if name.startswith("slstm"):
        state = carry if name != "slstm_block" else carry["state"]
        n = 1 + jnp.abs(state.n)  # a carry the cell can have: n >= 1, |c| <= n, |h| <= 1
        state = SLSTMState(n * jnp.tanh(state.c), n, state.m, 0.5 * jnp.tanh(state.h))
        carry = state if name != "slstm_block" else {**carry, "state": state}
    carry = jax.tree.map(lambda a: a.at[1].set(0.0), carry)
    return params, xs, carry


def take(tree, index):
    """Every leaf of ``tree`` indexed on its leading axis."""
    return jax.tree.map(lambda a: a[index], tree)


def valid_mask(lengths=LENGTHS):
    return np.arange(T)[None] < np.asarray(lengths)[:, None]


@functools.partial(jax.jit, static_argnames=("name", "mode", "reverse", "time_major", "checkpoint"))
def run(name, params, xs, carry, lengths, resets, mode, reverse=False, time_major=False,
        checkpoint=None):
    return sn.scan(CELLS[name][0], params, xs, carry=carry, lengths=lengths, resets=resets,
                   mode=mode, reverse=reverse, time_major=time_major, chunk_size=4,
                   checkpoint=checkpoint)


@functools.partial(jax.jit, static_argnames=("name", "mode", "checkpoint"))
def grads(name, params, xs, carry, mode, checkpoint=None):
    """Gradients of a loss on the outputs and the final carry, for params, xs and carry."""
    w = jax.random.normal(jax.random.key(9), (B, T, W))

    def loss(params, xs, carry):
        carry, ys = run(name, params, xs, carry, LENGTHS, RESETS, mode, checkpoint=checkpoint)
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.tanh(c)) for c in jax.tree.leaves(carry))

    return jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)


def finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


# ---------------------------------------------------------------- the tests

def test_initialisation_follows_nx_ai():
    p = sn.slstm(W, NH).init(jax.random.key(0), F)
    b = p["b"].reshape(NH, 4, W // NH)
    np.testing.assert_allclose(b[:, 1], [[5.0, 5 - 12 / 3**0.3, 5 - 12 * (2 / 3)**0.3, -7.0]] * NH,
                               rtol=1e-6)
    np.testing.assert_array_equal(b[:, [0, 2, 3]], 0.0)
    np.testing.assert_array_equal(p["r"], 0.0)
    assert p["r"].shape == (NH, W // NH, 4 * W // NH)
    exp_b = sn.slstm(W, NH, forget_gate="exp").init(jax.random.key(0), F)["b"]
    np.testing.assert_allclose(jnp.exp(exp_b.reshape(NH, 4, -1)[:, 1]), jax.nn.sigmoid(b[:, 1]),
                               rtol=1e-6)
    p = sn.mlstm(W, NH).init(jax.random.key(0), F)
    np.testing.assert_array_equal(p["w_x"][:, 3 * W:3 * W + 2 * NH], 0.0)
    np.testing.assert_allclose(p["b"][3 * W + NH:3 * W + 2 * NH], [3.0, 6.0])
    p = mlstm_block(W, NH, qkv_block_size=2).init(jax.random.key(0), W)
    np.testing.assert_allclose(p["b_gates"][NH:], [3.0, 6.0])
    np.testing.assert_array_equal(p["skip"], 1.0)
    assert p["w_q"].shape == (8, 2, 2) and p["conv_w"].shape == (4, 2 * W)
    p = slstm_block(W, NH, block_index=1, depth=3).init(jax.random.key(0), W)
    b = p["cell"]["b"].reshape(NH, 4, -1)[0, 1]
    np.testing.assert_allclose(b, 5 - 12 * (np.arange(4) / 3) ** (0.3 + 1.3 / 2), rtol=1e-6)
    assert sn.slstm(32) == sn.slstm(32) and sn.mlstm(32) == sn.mlstm(32)  # memoised


CASES = [(name, mode) for name in CELLS for mode in MODES[name]]


@pytest.mark.parametrize("name,mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_every_mode_equals_the_reference_with_carry_handoff_lengths_resets(name, mode):
    """From a random carry, over lengths and resets, then on from the carry it returned
    (a second window: no new compilation), against the reference over both windows."""
    params, xs, carry = inputs(name)
    more = jax.random.normal(jax.random.key(7), xs.shape)
    full = jnp.full((B,), T)
    valid = np.concatenate([valid_mask(), np.ones((B, T), bool)], 1)
    reset = np.concatenate([RESETS, RESETS], 1)
    want_carry, want_ys = reference(name, params, np.concatenate([xs, more], 1), carry, valid, reset)
    handed, first = run(name, params, xs, carry, LENGTHS, RESETS, mode)
    got_carry, second = run(name, params, more, handed, full, RESETS, mode)
    close(jnp.concatenate([first, second], 1), want_ys)
    close(got_carry, want_carry)
    if mode == "sequential" and name != "slstm_exp":  # the cell's own step, token by token
        close(apply_loop(CELLS[name][0], params, xs, carry, valid[:, :T], reset[:, :T]),
              (handed, first))


@pytest.mark.parametrize("name", ["slstm", "mlstm", "mlstm_block", "slstm_block"])
def test_reverse_and_time_major_equal_the_reference_on_flipped_rows(name):
    """The reference on each row's valid steps reversed, its resets moved to the flipped
    position of the step before each episode start."""
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


@pytest.mark.parametrize("name", ["slstm", "mlstm", "mlstm_block", "slstm_block"])
def test_nan_padding_gives_zero_gradients_equal_across_modes_and_checkpointing(name):
    """Padded steps hold NaN: every gradient is finite and the padded inputs' is exactly
    zero. The default mode ("chunked" for the mLSTM family) against the sequential one
    with ``checkpoint=5`` (blocks of 5 recomputed in the backward pass)."""
    params, xs, carry = inputs(name)
    xs = jnp.where(valid_mask()[..., None], xs, jnp.nan)
    want = grads(name, params, xs, carry, "auto")
    got = grads(name, params, xs, carry, "sequential", checkpoint=5)
    for g in (want, got):
        assert finite(g)
        np.testing.assert_array_equal(np.asarray(g[1])[~valid_mask()], 0.0)
    close(got, want, atol=1e-4, rtol=1e-4)


def test_the_fused_tbptt_epoch_equals_the_window_loop_in_a_stack_of_all_four():
    cells = [mlstm_block(W, NH, qkv_block_size=2), slstm_block(W, NH), sn.slstm(W, NH),
             sn.mlstm(W, NH)]
    model = sn.stack(cells)
    params = {"rnn": model.init(jax.random.key(0), W),
              "w": jax.random.normal(jax.random.key(2), (W, 2))}
    x = jax.random.normal(jax.random.key(1), (2, 12, W))
    windows = split_windows((x, (x[..., 0] > 0).astype(jnp.int32)), 6)

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, ys = model.apply(params["rnn"], x, carry=carry, chunk_size=4)
        return softmax_cross_entropy(ys @ params["w"], y), (carry, {})

    optimizer = optax.sgd(0.3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    state_a, carry_a, metrics_a = make_epoch_step(loss_fn, optimizer)(
        state, model.initial_carry(2), windows)
    step = make_window_step(loss_fn, optimizer)
    state_b, carry_b = create_train_state(params, optimizer, jax.random.key(1)), model.initial_carry(2)
    losses = []
    for k in range(2):
        state_b, carry_b, metrics = step(state_b, carry_b, take(windows, k))
        losses.append(metrics["loss"])
    close((state_b.params, carry_b, jnp.stack(losses)), (state_a.params, carry_a, metrics_a["loss"]))
    assert float(jnp.abs(state_a.params["w"] - params["w"]).max()) > 1e-3  # it trained


def test_default_cells_in_a_bidirectional_stack_under_shard_map_match_one_device():
    """Defaults from the width alone (32), every cell bidirectional, 8 CPU devices."""
    from seqnets import parallel

    model = sn.stack([mlstm_block(32), slstm_block(64), sn.slstm(32), sn.mlstm(32)],
                     bidirectional=True)
    params = {"rnn": model.init(jax.random.key(0), 32),
              "w": jax.random.normal(jax.random.key(2), (model.output_size, 2))}

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x)
        return softmax_cross_entropy(ys[:, -1] @ params["w"], y), {}

    batch = (jax.random.normal(jax.random.key(1), (8, 6, 32)),
             jax.random.randint(jax.random.key(3), (8,), 0, 2))
    optimizer = optax.sgd(0.1)
    one, _ = make_train_step(loss_fn, optimizer, donate=False)(
        create_train_state(params, optimizer, jax.random.key(1)), batch)
    mesh = parallel.data_mesh()
    state = parallel.replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
    many, _ = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)(
        state, parallel.shard_batch(batch, mesh))
    assert finite(one.params)
    close(jax.device_get(many.params), jax.device_get(one.params))


@pytest.mark.parametrize("shift", [1000.0, -1000.0])
def test_slstm_outputs_do_not_move_when_every_input_gate_shifts_by_1000(shift):
    """Adding ``shift`` to every input-gate pre-activation (and to the carry's ``m``)
    multiplies the paper's ``c`` and ``n`` alike by ``exp(shift)``: ``h`` must not move.
    Only the stabiliser keeps ``exp(+-1000)`` out of float32; without the fresh-state rule
    a reset at ``i~ = -1000`` would give ``h = 0 / 0``.

    Tolerance: near 1000, float32 holds ``i~`` and ``m`` only to 3e-5 (half their ulp),
    which ``exp(i~ - m)`` turns into a relative error of each gate; ``h`` is a weighted
    mean of values in [-1, 1], so it moves by a few 1e-5: 2e-4 here, and 1e-6 relative
    on ``m`` itself. A wrong stabiliser moves ``h`` by O(0.1) or makes it NaN."""
    name = "slstm"
    params, xs, carry = inputs(name)
    want_carry, want_ys = reference(name, params, xs, carry, valid_mask(), np.asarray(RESETS))
    shifted = {**params, "b": params["b"].reshape(NH, 4, -1).at[:, 0].add(shift).reshape(-1)}
    carry = carry._replace(m=carry.m + shift)
    got_carry, got_ys = run(name, shifted, xs, carry, LENGTHS, RESETS, "sequential")
    close(got_ys, want_ys, atol=2e-4, rtol=2e-4)
    # the stored c, n are unchanged, and m moved by the shift
    close(got_carry._replace(m=None), want_carry._replace(m=None), atol=2e-4, rtol=2e-4)
    close(got_carry.m, want_carry.m + shift, rtol=1e-6)
    assert finite(grads(name, shifted, xs, carry, "auto"))


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_extreme_gate_pre_activations_stay_finite_and_exact(name):
    """Forget and input gates at +-30 in every head (the float32 exp overflows from 89
    and the paper's unstabilised states reach exp(360) here) against the float64 reference."""
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
    got_carry, got_ys = run(name, params, xs, carry, LENGTHS, RESETS, MODES[name][-1])
    close(got_ys, want_ys)
    close(got_carry, want_carry)
    assert finite(grads(name, params, xs, carry, "auto"))


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
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="runs only in modes"):
        sn.scan(cell, params, jnp.ones((2, 4, 3)), mode="chunked")
    with pytest.raises(ValueError, match="carry has the wrong structure"):
        sn.scan(cell, params, jnp.ones((2, 4, 3)), carry=tuple(cell.initial_carry(2)))
