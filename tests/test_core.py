"""The sequence core: carries of any rank, the RG-LRU's segment starts, cells as data,
the registry, the linen module's options, and `Stack.step`.

Each of the first four tests reproduces a defect of the old core as it was found (see
issue 19); they use only names that existed before the fix.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn
from seqnets.ops import masks, registry


def close(got, want, atol=1e-5, rtol=1e-5):
    chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


# ---- 1. masks fit carries of any rank -----------------------------------------------------

def matrix_cell(inner):
    """A carry ``(batch, *inner)``: ``S <- 0.9 S + u`` with ``u`` broadcast from the input."""
    width = inner[0]

    def init(key, input_size):
        return {"w_x": jax.random.normal(key, (input_size, width))}

    def project(params, x):
        return x @ params["w_x"]

    def step(params, s, u):
        s = 0.9 * s + u.reshape(u.shape + (1,) * (len(inner) - 1))
        return s, jnp.sum(s.reshape(s.shape[0], width, -1), axis=-1)

    return sn.make_cell(init=init, initial_carry=lambda b: jnp.zeros((b, *inner)),
                        project=project, step=step, hidden_size=width, name="matrix")


@pytest.mark.parametrize("inner", [(3,), (3, 3), (3, 3, 3)], ids=["rank2", "rank3", "rank4"])
def test_lengths_and_resets_select_whole_rows_of_a_carry_of_any_rank(inner):
    """Batch 3 equals the inner axes: a mask broadcast as ``mask[:, None]`` would select
    along an inner axis (the old core's carry differed by 8.19, silently)."""
    cell = matrix_cell(inner)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (3, 5, 2))
    carry0 = jax.random.normal(jax.random.key(2), (3, *inner))
    lengths = jnp.array([5, 2, 0])
    resets = jnp.zeros((3, 5), bool).at[0, 3].set(True)
    for reverse in (False, True):
        carry, ys = sn.scan(cell, params, xs, carry=carry0, lengths=lengths, resets=resets,
                            reverse=reverse)
        for row in range(3):
            n = int(lengths[row])
            want_carry, want_ys = sn.scan(cell, params, xs[row:row + 1, :n],
                                          carry=carry0[row:row + 1], resets=resets[row:row + 1, :n],
                                          reverse=reverse)
            close(carry[row], want_carry[0])
            close(ys[row, :n], want_ys[0])
            np.testing.assert_array_equal(ys[row, n:], 0.0)


def test_where_rows_pads_the_mask_on_the_right():
    mask = jnp.array([True, False])
    a, b = jnp.ones((2, 2, 2, 2)), jnp.zeros((2, 2, 2, 2))
    got = masks.where_rows(mask, {"s": a, "h": a[:, 0, 0]}, {"s": b, "h": b[:, 0, 0]})
    np.testing.assert_array_equal(got["s"][0], 1.0)
    np.testing.assert_array_equal(got["s"][1], 0.0)
    np.testing.assert_array_equal(got["h"], [[1, 1], [0, 0]])


def test_flip_reverses_each_rows_valid_steps_and_is_its_own_inverse():
    xs = jnp.arange(12.0).reshape(4, 3, 1)  # (time, batch, 1)
    lengths = jnp.array([4, 2, 0])
    flipped = masks.flip(xs, lengths)
    np.testing.assert_array_equal(flipped[:, 0, 0], [9, 6, 3, 0])
    np.testing.assert_array_equal(flipped[:, 1, 0], [4, 1, 7, 10])  # padding stays put
    np.testing.assert_array_equal(flipped[:, 2, 0], xs[:, 2, 0])
    np.testing.assert_array_equal(masks.flip(flipped, lengths), xs)


# ---- 2. the RG-LRU starts segments as recurrentgemma does ---------------------------------

def recurrentgemma_rg_lru(params, xs, segment_pos, h0=None, c=8.0):
    """The RG-LRU written from recurrentgemma's ``RGLRU.__call__`` (jax/layers.py), one step
    at a time in NumPy float64, with seqnets' parameter names: at ``segment_pos == 0`` the
    decay is multiplied by 0 and the input normaliser replaced by 1."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(xs, np.float64)
    width = p["lam"].shape[0]
    gates = x @ p["w_x"] + p["b"]
    gate_a = 1 / (1 + np.exp(-gates[..., :width]))
    gate_x = 1 / (1 + np.exp(-gates[..., width:]))
    log_a = -c * gate_a * np.log1p(np.exp(-p["lam"]))  # -c r softplus(-Lambda)
    a, a_squared = np.exp(log_a), np.exp(2 * log_a)
    reset = (np.asarray(segment_pos) == 0)[..., None].astype(np.float64)
    multiplier = reset + (1 - reset) * np.sqrt(1 - a_squared)
    normalized_x = x * gate_x * multiplier
    a = a * (1 - reset)
    h = np.zeros(x.shape[::2]) if h0 is None else np.asarray(h0, np.float64)
    ys = []
    for t in range(x.shape[1]):
        h = a[:, t] * h + normalized_x[:, t]
        ys.append(h)
    return np.stack(ys, 1), h


def test_rg_lru_matches_recurrentgemma_at_step_zero_and_at_resets():
    cell = sn.rg_lru(4)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (2, 9, 4))
    resets = np.zeros((2, 9), bool)
    resets[0, 4] = resets[1, 7] = True
    segment_pos = np.zeros((2, 9), int)
    for b in range(2):
        for t in range(1, 9):
            segment_pos[b, t] = 0 if resets[b, t] else segment_pos[b, t - 1] + 1
    want, want_h = recurrentgemma_rg_lru(params, xs, segment_pos)
    # float32 against float64 over 9 steps of |h| ~ 1: a few float32 ulps.
    tol = {"atol": 1e-5, "rtol": 1e-5}
    for mode in ("sequential", "chunked", "parallel"):
        carry, ys = sn.scan(cell, params, xs, resets=jnp.asarray(resets), mode=mode)
        np.testing.assert_allclose(ys, want, **tol)
        np.testing.assert_allclose(carry.h, want_h, **tol)
        np.testing.assert_array_equal(carry.start, 0.0)
    # The bug this guards against, no segment ever starting (the old cell always
    # multiplied by sqrt(1 - a^2) and only zeroed a at resets), is far outside it.
    never, _ = recurrentgemma_rg_lru(params, xs, segment_pos + 1)
    assert np.max(np.abs(never[:, 0] - want[:, 0])) > 100 * tol["atol"]


def test_rg_lru_window_that_continues_a_carry_does_not_restart_its_segment():
    cell = sn.rg_lru(4)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (2, 10, 4))
    want, _ = recurrentgemma_rg_lru(params, xs, np.broadcast_to(np.arange(10), (2, 10)))
    carry, first = sn.scan(cell, params, xs[:, :6])
    carry, second = sn.scan(cell, params, xs[:, 6:], carry=carry, mode="chunked")
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), want, atol=1e-5, rtol=1e-5)
    # One step at a time from initial_carry is the definition every mode meets.
    carry, ys = cell.initial_carry(2), []
    for t in range(10):
        carry, y = cell.apply(params, carry, xs[:, t])
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys, 1), want, atol=1e-5, rtol=1e-5)


# ---- 3. cells are data -----------------------------------------------------------------------

def test_rebuilt_cells_are_equal_and_jit_compiles_once():
    assert sn.lstm(8) == sn.lstm(8) and hash(sn.lstm(8)) == hash(sn.lstm(8))
    assert sn.lstm(8, forget_bias=1.0) == sn.lstm(8)
    assert sn.lstm(8) != sn.lstm(9) and sn.lstm(8) != sn.gru(8)
    assert sn.stack(sn.gru(4), num_layers=2) == sn.stack(sn.gru(4), num_layers=2)
    traces = []

    @functools.partial(jax.jit, static_argnames="cell")
    def run(cell, params, xs):
        traces.append(cell.name)
        return sn.scan(cell, params, xs)[1]

    params = sn.lstm(8).init(jax.random.key(0), 3)
    for _ in range(3):
        run(sn.lstm(8), params, jnp.ones((2, 4, 3)))
    assert len(traces) == 1


def test_a_bool_or_numpy_hidden_size_is_judged_by_its_type():
    sn.lstm(1)  # cached: the bool below must not find it
    with pytest.raises(ValueError, match="hidden_size must be a positive int; got True"):
        sn.lstm(True)
    assert sn.lstm(np.int64(6)).hidden_size == 6 and type(sn.lstm(np.int64(6)).hidden_size) is int


# ---- 4. the linen module passes every option ---------------------------------------------------

def test_linen_rnn_draws_its_rng_for_recurrent_dropout_and_passes_the_scan_options():
    from seqnets.interop import RNN

    xs = jax.random.normal(jax.random.key(0), (2, 6, 3))
    module = RNN(sn.stack(sn.lstm(4), recurrent_dropout=0.5))
    variables = module.init(jax.random.key(1), xs)
    plain = module.apply(variables, xs)
    dropped = module.apply(variables, xs, deterministic=False,
                           rngs={"dropout": jax.random.key(2)})
    assert float(jnp.max(jnp.abs(dropped - plain))) > 1e-3

    cell = sn.min_gru(4)
    variables = RNN(cell).init(jax.random.key(1), xs)
    want = RNN(cell).apply(variables, xs)
    for options in ({"mode": "chunked", "chunk_size": 2}, {"mode": "parallel"},
                    {"checkpoint": 4}):
        close(RNN(cell, **options).apply(variables, xs), want)
    with pytest.raises(ValueError, match="mode must be one of"):
        RNN(cell, mode="fast").apply(variables, xs)


# ---- the registry and Stack.step --------------------------------------------------------------

def test_the_registry_resolves_auto_and_names_what_a_family_has():
    assert registry.modes("diagonal") == ("auto", "sequential", "chunked", "parallel")
    assert registry.modes("nonlinear") == ("auto", "sequential")
    args = {"dtype": jnp.float32, "time": 10, "batch": 2, "state": 3}
    assert registry.resolve("diagonal", **args, platform="cpu")[0] is registry.ScanMode.SEQUENTIAL
    assert registry.resolve("diagonal", **args, platform="gpu")[0] is registry.ScanMode.PARALLEL
    with pytest.raises(ValueError, match=r"no 'chunked' kernel .* modes \('auto', 'sequential'\)"):
        registry.resolve("nonlinear", "chunked", **args)
    with pytest.raises(ValueError, match=r"no kernels are registered for .*'unknown'"):
        registry.resolve("unknown", **args)


def test_a_later_kernel_takes_precedence_on_its_platform_only():
    calls = []

    def kernel(tag):
        def run(*args, **kwargs):
            calls.append(tag)
        return run

    registry.register("test_family", "sequential", kernel("any"))
    registry.register("test_family", "sequential", kernel("gpu"), platforms=["gpu"])
    args = {"dtype": jnp.float32, "time": 1, "batch": 1, "state": 1}
    registry.resolve("test_family", "sequential", **args, platform="cpu")[1]()
    registry.resolve("test_family", "sequential", **args, platform="gpu")[1]()
    assert calls == ["any", "gpu"]


def test_stack_step_equals_apply_and_refuses_a_bidirectional_stack():
    model = sn.stack([sn.lstm(4), sn.rg_lru(4), sn.s6(4, 2)])
    params = model.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    _, want = model.apply(params, xs)
    step = jax.jit(model.step)
    carry, ys = model.initial_carry(2), []
    for t in range(5):
        carry, y = step(params, carry, xs[:, t])
        ys.append(y)
    # One step's projection is a small matmul, the sequence's one large one: rounding.
    close(jnp.stack(ys, 1), want)
    bidirectional = sn.stack(sn.lstm(4), bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional stack has no one-step form"):
        bidirectional.step(bidirectional.init(jax.random.key(0), 3),
                           bidirectional.initial_carry(2), xs[:, 0])
    with pytest.raises(ValueError, match="params must be a list with one dict per layer"):
        model.step(params[0]["forward"], carry, xs[:, 0])
