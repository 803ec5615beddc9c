"""seqnets.ops.gated_linear_attention: every mode against the step-by-step reference,
outputs, final state and gradients (tolerance: tests/matrix_reference.py), with a decay
per key, per head and none, masks, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqnets.ops import gated_linear_attention, gla, registry
from tests.matrix_reference import (
    assert_close,
    compare_all,
    evaluate,
    scatter_segments,
    segment_batch,
    strong_decays,
)

MODES = ("sequential", "chunked", "parallel")


def make_inputs(seed, B=2, T=45, H=2, K=16, V=8, decay="key", strength="moderate"):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, T, H, K)).astype(np.float32)
    k = rng.normal(size=(B, T, H, K)).astype(np.float32)
    v = rng.normal(size=(B, T, H, V)).astype(np.float32)
    shape = (B, T, H, K) if decay == "key" else (B, T, H)
    g = (strong_decays(rng, shape) if strength == "strong"
         else np.log(1 / (1 + np.exp(-(rng.normal(size=shape) + 2)))).astype(np.float32))
    S0 = rng.normal(size=(B, H, K, V)).astype(np.float32)
    return q, k, v, (None if decay == "none" else g), S0


def fns(chunk_size, gated=True, **masks):
    if gated:
        out = {"naive": lambda q, k, v, g, s: gla.naive_gated_linear_attention(
            q, k, v, g, initial_state=s, **masks)}
        for mode in MODES:
            out[mode] = lambda q, k, v, g, s, m=mode: gated_linear_attention(
                q, k, v, g, initial_state=s, mode=m, chunk_size=chunk_size, **masks)
        return out
    out = {"naive": lambda q, k, v, s: gla.naive_gated_linear_attention(
        q, k, v, initial_state=s, **masks)}
    for mode in MODES:
        out[mode] = lambda q, k, v, s, m=mode: gated_linear_attention(
            q, k, v, initial_state=s, mode=m, chunk_size=chunk_size, **masks)
    return out


@pytest.mark.parametrize(("decay", "strength"),
                         [("key", "moderate"), ("key", "strong"), ("head", "strong")])
def test_modes_match_the_reference(decay, strength):
    """An initial state, T = 45 with chunks of 16 (a padded last chunk), and gradients."""
    q, k, v, g, S0 = make_inputs(0, decay=decay, strength=strength)
    compare_all(evaluate(fns(16), (q, k, v, g, S0)), "naive", terms=45 * 16,
                names=["q", "k", "v", "g", "initial_state"])


def test_no_decay_is_causal_linear_attention():
    q, k, v, _, S0 = make_inputs(1, T=20, decay="none")
    compare_all(evaluate(fns(8, gated=False), (q, k, v, S0)), "naive", terms=20 * 16,
                names=["q", "k", "v", "initial_state"])


@pytest.mark.parametrize("decay", ["key", "head"])
def test_resets_and_valid_masks_match_each_segment_run_alone(decay):
    """Resets and invalid steps (holding NaN) against the unmasked reference run on each
    segment alone; gradients against the masked reference; NaN reaches nothing."""
    B, T = 3, 45
    q, k, v, g, S0 = make_inputs(2, B=B, T=T, decay=decay, strength="strong")
    rng = np.random.default_rng(3)
    reset = rng.random((B, T)) < 0.08
    reset[0, 16] = reset[1, 0] = reset[2, 31] = True  # at a chunk start, at t = 0
    valid = rng.random((B, T)) > 0.2
    valid[2, 31] = False  # a reset on an invalid step
    valid[1, 40:] = False  # right padding
    nan = lambda x: np.where(valid.reshape(B, T, *[1] * (x.ndim - 2)), x, np.nan)  # noqa: E731
    inputs = (nan(q), nan(k), nan(v), nan(g), S0)
    results = evaluate(fns(16, reset=jnp.asarray(reset), valid=jnp.asarray(valid)), inputs)

    segs, states, places, owners = segment_batch({"q": q, "k": k, "v": v, "g": g}, reset,
                                                 valid, S0)
    o_seg, S_seg = jax.jit(gla.naive_gated_linear_attention)(
        segs["q"], segs["k"], segs["v"], segs["g"], initial_state=states)
    o_want, S_want = scatter_segments(np.asarray(o_seg), np.asarray(S_seg), places, owners, B, T)
    for mode in ("naive", *MODES):
        o, S, grads = results[mode]
        assert_close(o, o_want, T * 16, f"{mode} outputs")
        assert np.all(np.asarray(o)[~valid] == 0), mode
        assert_close(S, S_want, T * 16, f"{mode} final state")
        for name, grad in zip("qkvg", grads, strict=False):
            grad = np.asarray(grad)
            assert np.all(np.isfinite(grad)), (mode, name)
            assert np.all(grad[~valid] == 0), (mode, name)
    compare_all(results, "naive", terms=T * 16, names=["q", "k", "v", "g", "initial_state"])


def test_long_sequence_chunked_matches_the_reference():
    """T = 2,048 in chunks of 64 with a decay per key, outputs and final state (gradients
    and the parallel mode: the slow test)."""
    q, k, v, g, S0 = make_inputs(4, B=1, T=2048, H=1, K=16, V=16)
    run = jax.jit(lambda *x: [gated_linear_attention(*x[:4], initial_state=x[4], mode=m)
                              for m in ("sequential", "chunked")] + [
        gla.naive_gated_linear_attention(*x[:4], initial_state=x[4])])
    (o_s, S_s), (o_c, S_c), (o_n, S_n) = run(q, k, v, g, S0)
    for name, o, S in (("sequential", o_s, S_s), ("chunked", o_c, S_c)):
        assert_close(o, o_n, 2048 * 16, f"{name} outputs")
        assert_close(S, S_n, 2048 * 16, f"{name} final state")


@pytest.mark.slow
def test_long_sequence_gradients():
    q, k, v, g, S0 = make_inputs(5, B=1, T=2048, H=2, K=32, V=32, strength="strong")
    compare_all(evaluate(fns(64), (q, k, v, g, S0)), "naive", terms=2048 * 32,
                names=["q", "k", "v", "g", "initial_state"])


def test_auto_and_registry():
    assert registry.modes("gla") == ("auto", "sequential", "chunked", "parallel")
    resolve = lambda t: registry.resolve("gla", "auto", dtype="float32", time=t,  # noqa: E731
                                         batch=1, state=1)[0].value
    assert resolve(gla.AUTO_PARALLEL_UPTO) == "parallel"
    assert resolve(gla.AUTO_PARALLEL_UPTO + 1) == "chunked"


def test_single_block_under_jit():
    """B 4, T 32, 2 heads, K 64 in parallel mode (one block of 32): jaxlib 0.10.2's CPU
    backend miscompiled this shape's all-zero off-diagonal product (outputs off by 250)."""
    q, k, v, g, _ = make_inputs(8, B=4, T=32, H=2, K=64, V=8)
    run = jax.jit(lambda *x: (gated_linear_attention(*x, mode="parallel")[0],
                              gla.naive_gated_linear_attention(*x)[0]))
    o, o_naive = run(q, k, v, g)
    assert_close(o, o_naive, 32 * 64, "parallel outputs")


def test_bad_inputs_raise_clear_errors():
    q, k, v, g, S0 = (jnp.asarray(x) for x in make_inputs(0, T=4))
    cases = [
        (dict(q=q[..., 0]), r"q must be \(batch, time, heads, key_dim\)"),
        (dict(k=k[..., :3]), r"k must have shape"),
        (dict(v=v[:, :2]), r"v must be \(batch, time, heads, value_dim\)"),
        (dict(g=g[..., :3]), r"g must be \(batch, time, heads, K\) .* or \(batch, time, heads\)"),
        (dict(initial_state=S0[0]), r"initial_state must have shape"),
        (dict(v=v.astype(jnp.float16)), r"v must be float32; got float16"),
        (dict(mode="Chunked"), r"mode must be one of"),
        (dict(chunk_size=2.0), r"chunk_size must be a positive int"),
        (dict(reset=jnp.zeros((2, 4), jnp.int32)), r"reset must be a bool array"),
    ]
    base = dict(q=q, k=k, v=v, g=g, initial_state=S0)
    for change, message in cases:
        args = {**base, **change}
        with pytest.raises(ValueError, match=message):
            gated_linear_attention(args.pop("q"), args.pop("k"), args.pop("v"), **args)
