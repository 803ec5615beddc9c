"""The matrix-state cells (DeltaNet, Gated DeltaNet, GLA, Mamba-2) against a step-by-step
reference written from the papers' equations in NumPy float64, and the contract every
cell meets: lengths, resets, reverse, carry handoff, checkpointing, NaN padding, a
bidirectional stack, the fused TBPTT epoch and shard_map.

Tolerance: the cells compute in float32, the reference in float64. An output is a chain
of float32 sums: over the input (5 terms), the convolution (4 taps), the state (K <= 128
terms, over 11 steps that the chunked and parallel kernels add in other orders), the
norms and the output projection (H V <= 64 terms), each term O(1): a few hundred
roundings of 6e-8 relative, ~1e-6 when they add as a random walk. Measured: at most
1.8e-6 on outputs of |y| <= 3.4 and 1.3e-6 on states of |S| <= 16, in every mode.
ATOL = RTOL = 1e-5 leaves a factor of 5; the bugs planted to check it moved outputs or
states by 1e-3 (an L2-norm epsilon of 1e-4 instead of 1e-6) to 5 (a reset one step late).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import seqnets as sn
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy
from seqnets.training.tbptt import make_epoch_step, split_windows

ATOL = RTOL = 1e-5
B, T, F, D = 3, 11, 5, 32
CELLS = {  # built once: the jitted runs below compile once per cell
    "delta_net": sn.delta_net(D),
    "gated_delta_net": sn.gated_delta_net(D),
    "gla": sn.gla(D),
    "mamba2": sn.mamba2(D),
}
NAMES = sorted(CELLS)


def some_slow(*default):
    """The cells, those not in ``default`` marked slow. The stack, TBPTT, shard_map,
    handoff and gradient tests check the contract around the carry and the kernels' shared
    backward pass, which every cell builds alike (`seqnets.cells.matrix`): one or two
    cells run by default."""
    return [n if n in default else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]


def modes(cell):
    return ("sequential", "chunked", "parallel") if cell.family == "gla" else (
        "sequential", "chunked")


def close(got, want, atol=ATOL, rtol=RTOL):
    chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


# ---- the reference: the papers' equations, one step at a time, float64 -----------------

def silu(x):
    return x / (1.0 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def rms(x, gain, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def l2(x):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + 1e-6)


def conv_step(window, p):
    """``window (4, C)``: the last four inputs, oldest first."""
    return silu(np.sum(window * p["conv_w"], axis=0) + p.get("conv_b", 0.0))


def reference_step(name, p, buf, S, x):
    """One step of one batch row: ``buf (3, C)``, ``S (H, K, V)``, ``x (F,)``."""
    H, K, V = S.shape
    z = x @ p["w_x"]
    if name == "gla":
        q, k, v, gate, low = np.split(z, np.cumsum([H * K, H * K, H * V, H * V]))
        log_alpha = np.log(1.0 / (1.0 + np.exp(-(low @ p["w_gk"] + p["b_gk"])))) / 16.0
        q, k, v = q.reshape(H, K) * K**-0.5, k.reshape(H, K), v.reshape(H, V)
        S = np.exp(log_alpha.reshape(H, K))[..., None] * S + k[..., None] * v[:, None]
        o = np.einsum("hkv,hk->hv", S, q)
        return buf, S, (rms(o, p["norm"]) * silu(gate.reshape(H, V))).reshape(-1) @ p["w_o"]
    C = buf.shape[1]
    window = np.concatenate([buf, z[None, :C]])
    conved, buf, rest = conv_step(window, p), window[1:], z[C:]
    if name == "mamba2":  # K = N (state), V = P (head channels)
        u, b, c = np.split(conved, [H * V, H * V + K])
        u, gate, dt = u.reshape(H, V), rest[:H * V], softplus(rest[H * V:] + p["dt_bias"])
        A = -np.exp(p["a_log"])
        S = np.exp(dt * A)[:, None, None] * S + b[None, :, None] * (dt[:, None] * u)[:, None]
        y = np.einsum("hnp,n->hp", S, c) + p["d"][:, None] * u
        return buf, S, rms(y.reshape(-1) * silu(gate), p["norm"]) @ p["w_o"]
    q, k, v = np.split(conved, [H * K, 2 * H * K])
    q, k, v = l2(q.reshape(H, K)) * K**-0.5, l2(k.reshape(H, K)), v.reshape(H, V)
    beta = 1.0 / (1.0 + np.exp(-rest[:H]))
    if name == "gated_delta_net":
        g = -np.exp(p["a_log"]) * softplus(rest[H:2 * H] + p["dt_bias"])
        S = np.exp(g)[:, None, None] * S
        gate = rest[2 * H:]
    else:
        gate = rest[H:] if rest.size > H else None
    for h in range(H):
        u = beta[h] * (v[h] - S[h].T @ k[h])
        S[h] = S[h] + np.outer(k[h], u)
    o = rms(np.einsum("hkv,hk->hv", S, q), p["norm"])
    if gate is not None:
        o = o * silu(gate.reshape(H, V))
    return buf, S, o.reshape(-1) @ p["w_o"]


def reference(name, params, xs, carry, valid, reset):
    """The layer over ``xs (batch, time, F)`` from ``carry``; a reset zeroes the state and
    the convolution's inputs, a padded step keeps them and outputs zeros."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(xs, np.float64)
    S = np.array(carry["state"], np.float64)
    buf = np.array(carry["conv"], np.float64) if "conv" in carry else np.zeros((len(x), 0, 0))
    ys = np.zeros((*x.shape[:2], np.shape(params["w_o"])[1]))
    for row in range(x.shape[0]):
        for t in range(x.shape[1]):
            if not valid[row, t]:
                continue
            if reset[row, t]:
                S[row], buf[row] = 0.0, 0.0
            buf[row], S[row], ys[row, t] = reference_step(name, p, buf[row], S[row], x[row, t])
    out = {"state": S}
    if "conv" in carry:
        out["conv"] = buf
    return out, ys


def reversed_reference(name, params, xs, carry, lengths, resets):
    """Each row's valid steps reversed, its resets moved to the flipped position of the
    step before each episode start (the contract of `seqnets.scan`)."""
    rows = []
    for row in range(xs.shape[0]):
        n = int(lengths[row])
        flipped = np.zeros((1, n), bool)
        for t in np.flatnonzero(np.asarray(resets[row, :n])):
            if t > 0:
                flipped[0, n - t] = True
        carry_row = jax.tree.map(lambda c, r=row: c[r:r + 1], carry)
        rows.append(reference(name, params, np.asarray(xs)[row:row + 1, :n][:, ::-1],
                              carry_row, np.ones((1, n), bool), flipped))
    ys = np.zeros((xs.shape[0], xs.shape[1], D))
    for row, (_, y) in enumerate(rows):
        ys[row, :y.shape[1]] = y[0, ::-1]
    return jax.tree.map(lambda *c: np.concatenate(c), *[c for c, _ in rows]), ys


# ---- seqnets, jitted once per configuration ----------------------------------------------
#
# Compilation is most of this file's time, so every test shares two jitted functions:
# `run` (the forward pass) and `loss_grad` (outputs, carry and gradients in one program).

@functools.partial(jax.jit, static_argnames=("cell", "mode", "reverse", "time_major"))
def run(cell, params, xs, carry, lengths, resets, mode, reverse=False, time_major=False):
    """`seqnets.scan` in ``mode``; ``"step"`` runs the cell's step in the classic loop."""
    if mode == "step":
        cell, mode = cell._replace(recurrence=None), "sequential"
    return sn.scan(cell, params, xs, carry=carry, lengths=lengths, resets=resets, mode=mode,
                   reverse=reverse, chunk_size=4, time_major=time_major)


@functools.partial(jax.jit, static_argnames=("cell", "mode", "checkpoint"))
def loss_grad(cell, params, xs, carry, lengths, resets, w, mode, checkpoint=None):
    """``(carry, ys), gradients``: the gradients w.r.t. (params, xs, carry) of a loss of the
    outputs and the final carry, from one program."""
    def loss(params, xs, carry):
        carry, ys = sn.scan(cell, params, xs, carry=carry, lengths=lengths, resets=resets,
                            mode=mode, chunk_size=4, checkpoint=checkpoint)
        return jnp.sum(w * ys) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry)), (carry, ys)
    grads, out = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
    return out, grads


@functools.cache
def params_of(name):
    """The cell's parameters, from one compiled init (eager init dispatches op by op)."""
    return jax.jit(CELLS[name].init, static_argnums=1)(jax.random.key(0), F)


def inputs(name, batch=B, time=T):
    """The cell, its parameters, inputs with NaN at the padded steps, a carry returned
    mid-stream (a nonzero state and convolution inputs), lengths and resets."""
    cell = CELLS[name]
    params = params_of(name)
    lengths = jnp.array([time, 6, 0])
    padded = jnp.arange(time)[None, :, None] >= lengths[:, None, None]
    xs = jnp.where(padded, jnp.nan, jax.random.normal(jax.random.key(1), (batch, time, F)))
    keys = iter(jax.random.split(jax.random.key(2), 2))
    carry = jax.tree.map(lambda c: 0.5 * jax.random.normal(next(keys), c.shape),
                         cell.initial_carry(batch))
    # Row 0: a reset 4 steps in, so the convolution would reach across it; row 1: 2 steps.
    resets = jnp.zeros((batch, time), bool).at[0, 4].set(True).at[1, 2].set(True)
    return cell, params, xs, carry, lengths, resets


W = jax.random.normal(jax.random.key(3), (B, T, D))


def test_parameters_and_carry_follow_the_papers():
    dn, gdn, gla, m2 = (CELLS[n] for n in ("delta_net", "gated_delta_net", "gla", "mamba2"))
    assert (dn.family, gdn.family, gla.family, m2.family) == (
        "delta_rule", "delta_rule", "gla", "gla")
    shapes = {n: jax.tree.map(jnp.shape, c.initial_carry(2)) for n, c in CELLS.items()}
    assert shapes["delta_net"] == {"conv": (2, 3, 96), "state": (2, 4, 8, 8)}
    assert shapes["gated_delta_net"] == {"conv": (2, 3, 96), "state": (2, 6, 4, 8)}
    assert shapes["gla"] == {"state": (2, 4, 4, 8)}
    assert shapes["mamba2"] == {"conv": (2, 3, 320), "state": (2, 1, 128, 64)}
    for name in CELLS:
        params = params_of(name)
        np.testing.assert_array_equal(params["norm"], 1.0)
        if "conv_w" in params:
            assert np.all(np.abs(params["conv_w"]) <= 0.5) and params["conv_w"].shape[0] == 4
        if "dt_bias" in params:
            dt = np.log1p(np.exp(np.asarray(params["dt_bias"])))
            assert np.all((dt >= 0.001 * 0.999) & (dt <= 0.1 * 1.001)), name
    a = np.exp(np.asarray(params_of("mamba2")["a_log"]))
    assert np.all((a >= 1.0) & (a <= 16.0))
    a = np.exp(np.asarray(params_of("gated_delta_net")["a_log"]))
    assert np.all((a > 0.0) & (a <= 16.0))
    np.testing.assert_array_equal(params_of("mamba2")["d"], 1.0)
    assert sn.delta_net(D) is dn and sn.gla(D, 2) != gla  # cells compare by configuration


def test_bad_configurations_get_clear_errors():
    with pytest.raises(ValueError, match="num_heads=3 does not divide"):
        sn.delta_net(32, 3)
    with pytest.raises(ValueError, match="expand_k"):
        sn.gla(33)
    with pytest.raises(ValueError, match="conv_size"):
        sn.gated_delta_net(32, conv_size=1)
    with pytest.raises(ValueError, match="dt_min"):
        sn.mamba2(32, dt_min=0.5, dt_max=0.1)
    with pytest.raises(ValueError, match="runs only in modes"):
        sn.scan(CELLS["delta_net"], params_of("delta_net"), jnp.zeros((1, 3, F)),
                mode="parallel")


def test_an_empty_sequence_leaves_the_carry():
    cell, params, _, carry, _, _ = inputs("mamba2")
    got_carry, ys = sn.scan(cell, params, jnp.zeros((B, 0, F)), carry=carry, mode="chunked")
    assert ys.shape == (B, 0, D)
    close(got_carry, carry, atol=0, rtol=0)


# DeltaNet is Gated DeltaNet without the gate (the same kernel, the same layer shape): it
# runs with -m slow.
@pytest.mark.parametrize("name", some_slow("gated_delta_net", "gla", "mamba2"))
def test_every_mode_equals_the_reference_with_carry_lengths_resets_and_reverse(name):
    """Outputs and final carry of every kernel mode against the reference, NaN padding
    never reaching them; the chunked mode with ``checkpoint=8`` (a block of two chunks of
    4, then a block of 3 steps padded to 8). The runner flips each row's valid steps for
    every family alike: the cell's own step in the classic loop checks reverse (and
    time-major inputs) here, every mode reversed runs in the slow test below."""
    cell, params, xs, carry, lengths, resets = inputs(name)
    valid = np.arange(T)[None] < np.asarray(lengths)[:, None]
    want = reference(name, params, xs, carry, valid, np.asarray(resets))
    got = {mode: run(cell, params, xs, carry, lengths, resets, mode) for mode in modes(cell)
           if mode != "chunked"}
    # The chunked program is the one whose gradients the next tests check.
    got["chunked"] = loss_grad(cell, params, xs, carry, lengths, resets, W, "chunked", 8)[0]
    for mode, out in got.items():
        close(out, want)
        assert np.all(np.asarray(out[1])[1, 6:] == 0.0), mode
    carry_r, ys_r = run(cell, params, jnp.swapaxes(xs, 0, 1), carry, lengths, resets.T,
                        "step", reverse=True, time_major=True)
    close((carry_r, jnp.swapaxes(ys_r, 0, 1)),
          reversed_reference(name, params, xs, carry, lengths, resets))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_mode_reversed_and_the_step_forward(name):
    cell, params, xs, carry, lengths, resets = inputs(name)
    valid = np.arange(T)[None] < np.asarray(lengths)[:, None]
    close(run(cell, params, xs, carry, lengths, resets, "step"),
          reference(name, params, xs, carry, valid, np.asarray(resets)))
    want = reversed_reference(name, params, xs, carry, lengths, resets)
    for mode in modes(cell):
        close(run(cell, params, xs, carry, lengths, resets, mode, reverse=True), want)


@pytest.mark.parametrize("name", some_slow("gated_delta_net", "mamba2"))
def test_carry_handoff(name):
    """Two windows, the carry handed on, equal one sequence of both (the reference)."""
    cell, params, xs, carry, _, _ = inputs(name)
    xs = jnp.nan_to_num(xs, nan=0.5)
    xs2 = jax.random.normal(jax.random.key(5), xs.shape)
    full, none = jnp.array([T] * B), jnp.zeros((B, T), bool)
    both = np.concatenate([xs, xs2], axis=1)
    want = reference(name, params, both, carry, np.ones((B, 2 * T), bool),
                     np.zeros((B, 2 * T), bool))
    middle, ys1 = loss_grad(cell, params, xs, carry, full, none, W, "chunked", 8)[0]
    last, ys2 = loss_grad(cell, params, xs2, middle, full, none, W, "chunked", 8)[0]
    close((last, jnp.concatenate([ys1, ys2], axis=1)), want)


def gradients(name, mode, checkpoint):
    """The gradients of `loss_grad` with NaN padding: finite, exactly zero for the padded
    inputs, nonzero for the valid ones."""
    cell, params, xs, carry, lengths, resets = inputs(name)
    grads = loss_grad(cell, params, xs, carry, lengths, resets, W, mode, checkpoint)[1]
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf))), mode
    g_xs = np.asarray(grads[1])
    assert np.all(g_xs[np.isnan(np.asarray(xs))] == 0.0)
    assert np.any(g_xs[1, :6] != 0.0)
    return grads


# A gradient sums the outputs' errors over ~B T = 33 steps, and reaches |g| ~ 1,000 (GLA):
# 10x the outputs' tolerance. Measured: the modes' differences used at most 13 % of it.
GRAD_TOL = 10 * ATOL


@pytest.mark.parametrize("name", some_slow("gated_delta_net", "mamba2"))
def test_gradients_equal_the_reference_slopes_with_checkpointing_and_nan_padding(name):
    """The chunked kernel's gradients with ``checkpoint=8`` w.r.t. every parameter, the
    inputs and the carry, with lengths, resets and NaN at the padded inputs: finite,
    exactly zero for the padded inputs and, projected on a random direction in each leaf,
    equal to the central difference of the float64 reference's loss. The other modes'
    gradients equal these in the slow test below."""
    grads = gradients(name, "chunked", 8)
    paths, tree = jax.tree_util.tree_flatten_with_path(grads)
    rng = np.random.default_rng(0)
    for i, (path, g) in enumerate(paths):
        d = [np.zeros(np.shape(leaf)) for _, leaf in paths]
        d[i] = rng.normal(size=np.shape(g))
        terms = np.asarray(g, np.float64) * d[i]
        # float32 rounds each gradient entry relative to the products it sums, which are
        # O(1) however small their sum (Mamba-2's dt_bias: 0.04 = sum of O(1) terms,
        # off by 1.2e-7): 1e-5 of max(|terms|, 1), 4x the worst error measured (4e-6 of
        # GDN's dt_bias). Central differences in float64 err by ~1e-10.
        slope = reference_slope(name, jax.tree.unflatten(tree, d))
        assert abs(terms.sum() - slope) <= 1e-5 * max(np.abs(terms).sum(), 1.0), (
            jax.tree_util.keystr(path), terms.sum(), slope)


def reference_slope(name, direction, eps=1e-5):
    """The central difference of the float64 reference's loss (`loss_grad`'s) along
    ``direction``, a pytree like (params, xs, carry); padded inputs are never read."""
    _, params, xs, carry, lengths, resets = inputs(name)
    valid = np.arange(T)[None] < np.asarray(lengths)[:, None]

    def loss(sign):
        p, x, c = jax.tree.map(lambda a, d: np.asarray(a, np.float64) + sign * eps * d,
                               (params, jnp.nan_to_num(xs), carry), direction)
        c, ys = reference(name, p, x, c, valid, np.asarray(resets))
        return np.sum(np.asarray(W, np.float64) * ys) + sum(np.sum(v**2) for v in c.values())

    return (loss(1) - loss(-1)) / (2 * eps)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_gradients_equal_in_every_mode(name):
    want = gradients(name, "sequential", None)
    close(gradients(name, "chunked", 8), want, atol=GRAD_TOL, rtol=GRAD_TOL)
    if "parallel" in modes(CELLS[name]):
        close(gradients(name, "parallel", None), want, atol=GRAD_TOL, rtol=GRAD_TOL)


@pytest.mark.parametrize("name", some_slow("mamba2"))
def test_inside_a_bidirectional_stack_in_the_fused_tbptt_epoch(name):
    """Two windows of a bidirectional stack trained by the fused TBPTT epoch (the carry
    handed from window to window): the chunked kernels give the run of the cell's own
    step in the classic loop (the cheaper program to compile)."""
    cell = CELLS[name]
    models = {"chunked": sn.stack([cell], bidirectional=True),
              "sequential": sn.stack([cell._replace(recurrence=None)], bidirectional=True)}
    model = models["chunked"]
    params = {"rnn": jax.jit(model.init, static_argnums=1)(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (model.output_size, 2))}
    x = jax.random.normal(jax.random.key(1), (2, 12, F))
    windows = split_windows((x, (x[..., 0] > 0).astype(jnp.int32)), 6)

    def loss_fn_in(mode):
        def loss_fn(params, carry, batch, key):
            x, y = batch
            carry, ys = models[mode].apply(params["rnn"], x, carry=carry, mode=mode,
                                           chunk_size=4)
            return softmax_cross_entropy(ys @ params["w"], y), (carry, {})
        return loss_fn

    optimizer = optax.adam(1e-2)
    results = [make_epoch_step(loss_fn_in(mode), optimizer)(
        create_train_state(params, optimizer, jax.random.key(1)), model.initial_carry(2),
        windows) for mode in ("sequential", "chunked")]
    (state_a, carry_a, metrics_a), (state_b, carry_b, metrics_b) = results
    assert float(metrics_a["loss"][-1]) != float(metrics_a["loss"][0])  # it trained
    # Two Adam updates move parameters by ~lr; gradient differences of ~1e-6 relative
    # move them by far less than 1e-5.
    close((state_b.params, carry_b, metrics_b["loss"]),
          (state_a.params, carry_a, metrics_a["loss"]))


@pytest.mark.parametrize("name", some_slow("gated_delta_net"))
def test_shard_map_step_matches_one_device(name):
    from seqnets import parallel

    """One SGD step with the chunked kernel, the batch split over the 8 CPU devices, equals
    the step on one device with the cell's own step in the classic loop."""
    models = {"chunked": sn.stack([CELLS[name]]),
              "sequential": sn.stack([CELLS[name]._replace(recurrence=None)])}

    def loss_fn_in(mode):
        def loss_fn(params, batch, key):
            x, y = batch
            _, ys = models[mode].apply(params["rnn"], x, mode=mode, chunk_size=4)
            return softmax_cross_entropy(ys[:, -1] @ params["w"], y), {}
        return loss_fn

    params = {"rnn": jax.jit(models["chunked"].init, static_argnums=1)(jax.random.key(0), F),
              "w": jax.random.normal(jax.random.key(2), (D, 3))}
    batch = (jax.random.normal(jax.random.key(1), (16, 6, F)),
             jax.random.randint(jax.random.key(3), (16,), 0, 3))
    optimizer = optax.sgd(0.1)
    one, _ = make_train_step(loss_fn_in("sequential"), optimizer, donate=False)(
        create_train_state(params, optimizer, jax.random.key(1)), batch)
    mesh = parallel.data_mesh()
    state = parallel.replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
    many, _ = parallel.make_shard_map_train_step(loss_fn_in("chunked"), optimizer, mesh)(
        state, parallel.shard_batch(batch, mesh))
    close(jax.device_get(many.params), jax.device_get(one.params))
