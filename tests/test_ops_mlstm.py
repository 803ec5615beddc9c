"""seqnets.ops.mlstm: every mode against the step-by-step reference (ops/mlstm/naive.py).

The reference runs in float64, the kernels in float32; outputs, final states and the
gradients of a loss that reads all of them (w.r.t. q, k, v, i, f and the initial state)
are compared.

Tolerance: float32 rounding, ``u = 2**-24`` a rounding. A sum of ``n`` terms is off by
at most ``n u`` times the sum of its terms' magnitudes, and every weight ``exp(x)`` carries
the rounding of its exponent ``x``, ``E u`` with ``E`` bounding ``|x|``'s terms: the input
gates, the initial ``m``, and the cumulative log forget gates, which the chunked form sums
over up to a chunk (``L`` steps) and the step-by-step form over one step. So the error is
about ``(T + E) u`` relative to the largest magnitude, ``T`` the terms a state sums;
`tolerance` allows 4 times that. Where all of ``q, k, v`` are positive nothing cancels
and the bound holds element by element.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqnets.ops import mlstm, registry
from seqnets.ops.mlstm import mlstm_naive

U = 2.0**-24
MODES = ("sequential", "chunked")
CHUNK = 16  # T = 37 is not a multiple
B, T, H, K, V = 2, 37, 2, 8, 6  # K != V, so that a swapped axis fails


def problem(seed, b=B, t=T, h=H, *, gates=1.0, positive=False, zero_state=False):
    """float64 ``(q, k, v, i, f, C0, n0, m0)`` and the loss's weights ``(w_h, w_C, w_n, w_m)``."""
    rng = np.random.default_rng(seed)
    draw = (lambda *s: rng.uniform(0.1, 1.0, s)) if positive else (lambda *s: rng.normal(size=s))
    q, k, v = draw(b, t, h, K), draw(b, t, h, K), draw(b, t, h, V)
    i = gates * rng.uniform(-1, 1, (b, t, h))
    f = rng.normal(2, 2, (b, t, h))  # forget gates from 0.01 to 1
    state = [draw(b, h, K, V), draw(b, h, K), rng.normal(size=(b, h))]
    if zero_state:
        state = [np.zeros_like(s) for s in state]
    weights = [rng.normal(size=s) for s in ((b, t, h, V), (b, h, K, V), (b, h, K), (b, h))]
    return (q, k, v, i, f, *state), weights


def span(mode, chunk=CHUNK):
    """Steps over which a mode sums log forget gates in one exponent."""
    return chunk if mode == "chunked" else 1


def tolerance(args, chunk: int, factor: float = 4.0) -> float:
    """``factor (T + E) u``: E bounds the exponents' terms (see the module docstring)."""
    i, f, m0 = args[3], args[4], args[7]
    log_f = np.abs(np.logaddexp(0, -f))  # |log sigmoid(f)|
    window = np.cumsum(np.pad(log_f, [(0, 0), (1, 0), (0, 0)]), axis=1)
    span = min(chunk, i.shape[1])
    E = np.abs(i).max() + np.abs(m0).max() + (window[:, span:] - window[:, :-span]).max()
    return factor * (i.shape[1] + E) * U


def loss(fn, args, weights, masks):
    q, k, v, i, f, C0, n0, m0 = args
    h, (C, n, m) = fn(q, k, v, i, f, initial_state=(C0, n0, m0), **masks)
    kept = h
    if masks.get("valid") is not None:  # padded outputs are the caller's to drop
        kept = jnp.where(masks["valid"][:, :, None, None], h, 0)
    return sum(jnp.sum(x * w) for x, w in zip((kept, C, n, m), weights, strict=True)), (h, C, n, m)


@functools.partial(jax.jit, static_argnames=("fn",))
def outputs_and_grads(fn, args, weights, masks):
    return jax.grad(lambda a: loss(fn, a, weights, masks), has_aux=True)(args)[::-1]


@functools.cache  # one function, so one compilation, a configuration
def kernel(mode, chunk_size=CHUNK):
    return functools.partial(mlstm, mode=mode, chunk_size=chunk_size)


def run(fn, args, weights, masks=None, x64=False):
    """``(h, C, n, m)`` and the 8 gradients, as NumPy arrays."""
    masks = masks or {}
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        cast = lambda xs: tuple(jnp.asarray(x, dtype) for x in xs)  # noqa: E731
        out, grads = outputs_and_grads(fn, cast(args), cast(weights), masks)
        return [np.asarray(x) for x in out], [np.asarray(g) for g in grads]


def reference(args, weights, masks=None):
    return run(mlstm_naive, args, weights, masks, x64=True)


NAMES = ("h", "C", "n", "m", "dq", "dk", "dv", "di", "df", "dC0", "dn0", "dm0")


def assert_close(got, want, tol, args, weights, elementwise=()):
    """Each array within ``tol`` of its largest |reference| value (of its own, element by
    element, for the names in ``elementwise``).

    dm0 is a sum of terms that cancel: every output x scaled by exp(-m) adds -w x to it
    (``w`` the loss's weight), and the initial state, scaled by exp(-m0), adds dC0 C0
    and dn0 n0; only the eps terms remain. Its scale is the sum of their magnitudes.
    """
    (h, C, n, _), (dC0, dn0, dm0) = want[:4], want[-3:]
    size = lambda x, y: np.abs(x * y).reshape(*x.shape[:2], -1).sum(-1)  # noqa: E731 (B, H)
    terms = (np.abs(h * weights[0]).sum((1, 3)) + size(C, weights[1]) + size(n, weights[2])
             + size(dC0, args[5]) + size(dn0, args[6]) + np.abs(dm0))
    for name, a, b in zip(NAMES, got, want, strict=True):
        assert np.all(np.isfinite(a)), name
        err = np.abs(a - b)
        if name in elementwise:
            bad = err > tol * np.abs(b)
            assert not bad.any(), f"{name}: {bad.sum()} elements off by more than {tol:.2g} x |ref|"
        else:
            scale = terms.max() if name == "dm0" else np.abs(b).max()
            assert err.max() <= tol * scale, \
                f"{name}: max error {err.max():.3g} > {tol:.2g} x {scale:.3g}"


NO_MASKS = {"reset": jnp.zeros((B, T), bool), "valid": jnp.ones((B, T), bool)}


@pytest.mark.parametrize("mode", MODES)
def test_modes_match_the_reference(mode):
    """With an initial state and with zeros; T = 37, not a multiple of the chunk size;
    deterministic.
    Masks that change nothing: the program of `test_resets_and_padding`, compiled once;
    `test_input_gates_up_to_30` runs the kernels without masks."""
    for zero_state in (False, True):
        args, weights = problem(0, zero_state=zero_state)
        got, want = run(kernel(mode), args, weights, NO_MASKS), reference(args, weights, NO_MASKS)
        assert_close(got[0] + got[1], want[0] + want[1], tolerance(args, span(mode)), args, weights)
    again = run(kernel(mode), args, weights, NO_MASKS)  # same inputs, same bits
    for a, b in zip(got[0] + got[1], again[0] + again[1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_input_gates_up_to_30(mode):
    """exp(30) terms everywhere: only the stabiliser keeps the sums in range. Positive
    q, k, v: the outputs and states hold to the bound element by element. Then queries
    of 1e-5, where eps is a tenth of the denominator and dh/dm = -h eps / scale counts."""
    for query_scale in (1.0, 1e-5):
        args, weights = problem(1, gates=30.0, positive=True)
        args = (args[0] * query_scale, *args[1:])
        (out, grads), (want, want_grads) = run(kernel(mode), args, weights), reference(args, weights)
        assert want[3].max() > 25  # m follows the largest input gates
        assert_close(out + grads, want + want_grads, tolerance(args, span(mode)), args, weights,
                     elementwise=("h", "C", "n"))


def masks_problem():
    args, weights = problem(2, gates=3.0)
    rng = np.random.default_rng(2)
    reset = rng.random((B, T)) < 0.1
    reset[0, [0, 16, 17]] = True  # at the start, on a chunk boundary, twice in a row
    valid = np.ones((B, T), bool)
    valid[0, 30:] = False  # right padding
    valid[1, 5:8] = False  # frozen steps inside a sequence
    valid[1, 20] = False
    reset[1, [7, 20]] = True  # resets on frozen steps: the state stays zero
    # Padded inputs may hold anything: NaN and inf must reach neither outputs nor gradients.
    for x, bad in zip(args[:5], (np.nan, np.inf, -np.inf, np.nan, np.inf), strict=True):
        x[~valid] = bad
    return args, weights, reset, valid


def segments(args, reset, valid):
    """Each run of steps between resets as its own row: ``rows`` of ``(q, k, v, i, f)``
    padded to T with frozen steps, its first state, and where it came from."""
    rows, where = [], []
    for b in range(B):
        starts = [0, *[t for t in range(1, T) if reset[b, t]], T]
        for s, e in itertools.pairwise(starts):
            where.append((b, s, e))
            rows.append(reset[b, s])  # starts from zeros, not from the initial state
    q, k, v, i, f, C0, n0, m0 = args
    take = lambda x: np.stack([np.pad(x[b, s:e], [(0, T - e + s)] + [(0, 0)] * (x.ndim - 2))  # noqa: E731
                               for b, s, e in where])
    state = [np.stack([np.zeros_like(x[b]) if zero else x[b]
                       for (b, _, _), zero in zip(where, rows, strict=True)]) for x in (C0, n0, m0)]
    keep = np.stack([np.pad(valid[b, s:e], (0, T - e + s)) for b, s, e in where])
    return [take(x) for x in (q, k, v, i, f)] + state, keep, where


def test_the_reference_masks_are_separate_sequences():
    """naive.py with masks equals naive.py run on each segment alone (float64)."""
    args, _, reset, valid = masks_problem()
    with jax.enable_x64(True):
        h, state = mlstm_naive(*args[:5], initial_state=args[5:], reset=jnp.asarray(reset),
                               valid=jnp.asarray(valid))
        rows, keep, where = segments(args, reset, valid)
        h_rows, state_rows = mlstm_naive(*rows[:5], initial_state=rows[5:], valid=jnp.asarray(keep))
    last = {}
    for r, (b, s, e) in enumerate(where):
        ok = valid[b, s:e]
        np.testing.assert_array_equal(np.asarray(h)[b, s:e][ok], np.asarray(h_rows)[r, : e - s][ok])
        last[b] = r
    for b, r in last.items():
        for x, x_rows in zip(state, state_rows, strict=True):
            np.testing.assert_array_equal(np.asarray(x)[b], np.asarray(x_rows)[r])


@pytest.mark.parametrize("mode", MODES)
def test_resets_and_padding(mode):
    args, weights, reset, valid = masks_problem()
    masks = {"reset": jnp.asarray(reset), "valid": jnp.asarray(valid)}
    got, want = run(kernel(mode), args, weights, masks), reference(args, weights, masks)
    assert np.all(np.isfinite(got[0][0]))  # padded outputs: anything finite
    for out in (got, want):
        out[0][0] = np.where(valid[:, :, None, None], out[0][0], 0)
    clean = [np.where(np.isfinite(x), x, 0) for x in args]  # E from the valid inputs only
    assert_close(got[0] + got[1], want[0] + want[1], tolerance(clean, span(mode)), clean, weights)
    for name, g in zip(NAMES[4:9], got[1][:5], strict=True):  # no gradient reaches a padded input
        assert not np.any(g[~valid]), name


@pytest.mark.parametrize("chunk_size", [1, 64])
def test_chunk_sizes(chunk_size):
    """One step a chunk, and one chunk longer than T."""
    args, weights = problem(3)
    got, want = run(kernel("chunked", chunk_size), args, weights), reference(args, weights)
    assert_close(got[0] + got[1], want[0] + want[1], tolerance(args, chunk_size), args, weights)


@pytest.mark.parametrize("mode", MODES)
def test_2048_steps(mode):
    args, weights = problem(4, b=1, t=2048, h=1)
    got, want = run(kernel(mode, 64), args, weights), reference(args, weights)
    assert_close(got[0] + got[1], want[0] + want[1], tolerance(args, span(mode, 64)), args, weights)


def test_auto_follows_the_measured_rule():
    assert registry.modes("mlstm") == ("auto", "sequential", "chunked")
    resolve = functools.partial(registry.resolve, "mlstm", "auto", dtype=jnp.float32, batch=4,
                                state=4 * 64 * 65, platform="cpu")
    assert resolve(time=1)[0].value == "chunked"  # measured: faster from T = 1 on CPU
    assert resolve(time=2048)[0].value == "chunked"


def test_bad_inputs_get_clear_errors():
    args, _ = problem(0)
    q, k, v, i, f, C0, n0, m0 = (jnp.asarray(x, jnp.float32) for x in args)
    cases = [
        (lambda: mlstm(q[0], k, v, i, f), r"q must be \(batch, time, heads, K\)"),
        (lambda: mlstm(q, k[:, :5], v, i, f), r"k must have shape \(2, 37, 2, 8\)"),
        (lambda: mlstm(q, k, v[:, :, :1], i, f), r"v must be \(batch, time, heads, V\)"),
        (lambda: mlstm(q, k, v, i[..., None], f), r"i must have shape \(2, 37, 2\)"),
        (lambda: mlstm(q, k, v, i, f.astype(jnp.int32)), "f must be floating point"),
        (lambda: mlstm(q, k, v, i, f, initial_state=(C0, n0)),
         r"initial_state must be a tuple \(C, n, m\)"),
        (lambda: mlstm(q, k, v, i, f, initial_state=(C0, n0, m0[..., None])),
         r"m must have shape \(2, 2\)"),
        (lambda: mlstm(q, k, v, i, f, reset=jnp.zeros((2, 36), bool)), r"reset must have shape"),
        (lambda: mlstm(q, k, v, i, f, valid=jnp.ones((2, 37))),
         r"valid must be booleans.*astype\(bool\)"),
        (lambda: mlstm(q, k, v, i, f, chunk_size=0), "chunk_size must be a positive int"),
        (lambda: mlstm(q, k, v, i, f, mode="parallel"), "no 'parallel' kernel"),
        (lambda: mlstm(q, k, v, i, f, mode="fast"), "mode must be one of"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
