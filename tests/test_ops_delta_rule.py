"""seqnets.ops.gated_delta_rule: every mode against the step-by-step reference, outputs,
final state and gradients (tolerance: tests/matrix_reference.py), masks, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqnets.ops import delta_rule, gated_delta_rule, registry
from seqnets.ops.delta_rule.chunked import invert_unit_lower
from tests.matrix_reference import (
    assert_close,
    compare_all,
    evaluate,
    scatter_segments,
    segment_batch,
    strong_decays,
)

NAMES = ["q", "k", "v", "beta", "g", "initial_state"]
MODES = ("sequential", "chunked")


def make_inputs(seed, B=2, T=45, H=2, K=16, V=8, decay="moderate"):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, T, H, K)).astype(np.float32)
    k = rng.normal(size=(B, T, H, K)).astype(np.float32)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)  # the stable regime: beta |k|^2 <= 1
    v = rng.normal(size=(B, T, H, V)).astype(np.float32)
    beta = (1 / (1 + np.exp(-rng.normal(size=(B, T, H))))).astype(np.float32)
    g = (strong_decays(rng, (B, T, H)) if decay == "strong"
         else np.log(1 / (1 + np.exp(-(rng.normal(size=(B, T, H)) + 3)))).astype(np.float32))
    S0 = rng.normal(size=(B, H, K, V)).astype(np.float32)
    return q, k, v, beta, g, S0


def fns(chunk_size, **masks):
    out = {"naive": lambda q, k, v, b, g, s: delta_rule.naive_gated_delta_rule(
        q, k, v, b, g, initial_state=s, **masks)}
    for mode in MODES:
        out[mode] = lambda q, k, v, b, g, s, m=mode: gated_delta_rule(
            q, k, v, b, g, initial_state=s, mode=m, chunk_size=chunk_size, **masks)
    return out


@pytest.mark.parametrize("decay", ["moderate", "strong"])
def test_modes_match_the_reference(decay):
    """An initial state, T = 45 with chunks of 16 (a padded last chunk), and gradients."""
    inputs = make_inputs(0, decay=decay)
    compare_all(evaluate(fns(16), inputs), "naive", terms=45 * 16, names=NAMES)


def test_no_gate_is_deltanet():
    q, k, v, beta, _, S0 = make_inputs(1, T=20)
    fn = {"naive": lambda q, k, v, b, s: delta_rule.naive_gated_delta_rule(q, k, v, b,
                                                                         initial_state=s)}
    fn["chunked"] = lambda q, k, v, b, s: gated_delta_rule(q, k, v, b, initial_state=s,
                                                           mode="chunked", chunk_size=8)
    compare_all(evaluate(fn, (q, k, v, beta, S0)), "naive", terms=20 * 16,
                names=["q", "k", "v", "beta", "initial_state"])


def test_resets_and_valid_masks_match_each_segment_run_alone():
    """Resets and invalid steps (holding NaN) against the unmasked reference run on each
    segment alone; gradients against the masked reference; NaN reaches nothing."""
    B, T = 3, 45
    q, k, v, beta, g, S0 = make_inputs(2, B=B, T=T)
    rng = np.random.default_rng(3)
    reset = rng.random((B, T)) < 0.08
    reset[0, 16] = reset[1, 0] = reset[2, 31] = True  # at a chunk start, at t = 0
    valid = rng.random((B, T)) > 0.2
    valid[2, 31] = False  # a reset on an invalid step
    valid[1, 40:] = False  # right padding
    nan = lambda x: np.where(valid.reshape(B, T, *[1] * (x.ndim - 2)), x, np.nan)  # noqa: E731
    inputs = (nan(q), nan(k), nan(v), nan(beta), nan(g), S0)
    results = evaluate(fns(16, reset=jnp.asarray(reset), valid=jnp.asarray(valid)), inputs)

    segs, states, places, owners = segment_batch(
        {"q": q, "k": k, "v": v, "beta": beta, "g": g}, reset, valid, S0)
    o_seg, S_seg = jax.jit(delta_rule.naive_gated_delta_rule)(
        segs["q"], segs["k"], segs["v"], segs["beta"], segs["g"], initial_state=states)
    o_want, S_want = scatter_segments(np.asarray(o_seg), np.asarray(S_seg), places, owners, B, T)
    for mode in ("naive", *MODES):
        o, S, grads = results[mode]
        assert_close(o, o_want, T * 16, f"{mode} outputs")
        assert np.all(np.asarray(o)[~valid] == 0), mode
        assert_close(S, S_want, T * 16, f"{mode} final state")
        for name, grad in zip(NAMES[:5], grads, strict=False):
            grad = np.asarray(grad)
            assert np.all(np.isfinite(grad)), (mode, name)
            assert np.all(grad[~valid] == 0), (mode, name)
    compare_all(results, "naive", terms=T * 16, names=NAMES)


def test_long_sequence_chunked_matches_the_reference():
    """T = 2,048 in chunks of 64, outputs and final state (gradients: the slow test)."""
    q, k, v, beta, g, S0 = make_inputs(4, B=1, T=2048, H=1, K=16, V=16)
    run = jax.jit(lambda *x: [gated_delta_rule(*x[:5], initial_state=x[5], mode=m)
                              for m in MODES] + [
        delta_rule.naive_gated_delta_rule(*x[:5], initial_state=x[5])])
    (o_s, S_s), (o_c, S_c), (o_n, S_n) = run(q, k, v, beta, g, S0)
    for name, o, S in (("sequential", o_s, S_s), ("chunked", o_c, S_c)):
        assert_close(o, o_n, 2048 * 16, f"{name} outputs")
        assert_close(S, S_n, 2048 * 16, f"{name} final state")


@pytest.mark.slow
def test_long_sequence_gradients():
    inputs = make_inputs(5, B=1, T=2048, H=2, K=32, V=32)
    compare_all(evaluate(fns(64), inputs), "naive", terms=2048 * 32, names=NAMES)


def test_blocked_inverse_is_exact_to_rounding():
    """(I + A)^-1 for the A of correlated unit keys (k_t . k_s ~ 0.99), where the product
    form (I - A)(I + A^2)... erred 1e7: against NumPy's float64 inverse."""
    rng = np.random.default_rng(6)
    for C in (64, 48):  # 16 * 2^j blocks merged; substituted whole
        k = 0.99 * rng.normal(size=(4, 1, 32)) + 0.14 * rng.normal(size=(4, C, 32))
        k /= np.linalg.norm(k, axis=-1, keepdims=True)
        A = np.tril(rng.uniform(0.5, 1, size=(4, C, 1)) * (k @ k.transpose(0, 2, 1)), -1)
        want = np.linalg.inv(np.eye(C) + A)
        got = invert_unit_lower(jnp.asarray(A, jnp.float32))
        assert_close(got, want, C * C, f"inverse, C = {C}")


def test_auto_and_registry():
    assert registry.modes("delta_rule") == ("auto", "sequential", "chunked")
    resolve = lambda t: registry.resolve("delta_rule", "auto", dtype="float32", time=t,  # noqa: E731
                                         batch=1, state=1)[0].value
    assert resolve(delta_rule.AUTO_CHUNKED_FROM) == "chunked"
    assert resolve(delta_rule.AUTO_CHUNKED_FROM - 1) == "sequential"


def test_bad_inputs_raise_clear_errors():
    q, k, v, beta, g, S0 = (jnp.asarray(x) for x in make_inputs(0, T=4))
    cases = [
        (dict(q=q[0]), r"q must be \(batch, time, heads, key_dim\)"),
        (dict(k=k[:, :3]), r"k must have shape"),
        (dict(v=v[:1]), r"v must be \(batch, time, heads, value_dim\)"),
        (dict(beta=beta[..., None]), r"beta must have shape \(batch, time, heads\)"),
        (dict(g=g[..., None] * jnp.ones(16)), r"g must have shape .* one log-decay per head"),
        (dict(initial_state=S0[:, :, :3]), r"initial_state must have shape"),
        (dict(q=q.astype(jnp.bfloat16)), r"q must be float32; got bfloat16"),
        (dict(mode="fast"), r"mode must be one of"),
        (dict(mode="parallel"), r"no 'parallel' kernel"),
        (dict(chunk_size=0), r"chunk_size must be a positive int"),
        (dict(reset=jnp.zeros((2, 4))), r"reset must be a bool array"),
        (dict(valid=jnp.ones((2, 5), bool)), r"valid must have shape \(batch, time\)"),
        (dict(scale=jnp.ones(())), r"scale must be a Python float"),
    ]
    base = dict(q=q, k=k, v=v, beta=beta, g=g, initial_state=S0)
    for change, message in cases:
        args = {**base, **change}
        with pytest.raises(ValueError, match=message):
            gated_delta_rule(args.pop("q"), args.pop("k"), args.pop("v"), args.pop("beta"),
                             **args)
