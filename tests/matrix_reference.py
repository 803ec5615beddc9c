"""What the matrix-state kernel tests share: inputs, one jitted evaluation of every mode
with its gradients, the rounding tolerance, and the segment-by-segment reference.

Tolerance. Every output and state entry (and every gradient entry) is a sum of at most
``T * K`` products of the inputs (``T`` steps of ``K``-term dot products), which the
naive reference adds step by step and a chunked kernel in another order. With
round-to-nearest the rounding errors of such a sum behave as a random walk: two orders
differ by about ``sqrt(n) * u`` times the size of the summands (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2002, section 2.8; ``u = 2^-24``). ``tolerance``
allows ``4 sqrt(T K) u max|reference|``: both orders err, and a chunked kernel adds a few
roundings a term (an ``exp`` of a segment sum, the triangular inverse). A dropped decay
or a mask shifted by one step changes entries by a sizeable fraction of their scale,
hundreds of times more.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

UNIT_ROUNDOFF = 2.0 ** -24


def tolerance(want, terms: int) -> float:
    return 4 * math.sqrt(terms) * UNIT_ROUNDOFF * float(np.max(np.abs(want)))


def assert_close(got, want, terms: int, what: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.all(np.isfinite(got)), f"{what}: not finite"
    err, tol = float(np.max(np.abs(got - want))), tolerance(want, terms)
    assert err <= tol, f"{what}: max error {err:.3g} > tolerance {tol:.3g}"


def strong_decays(rng, shape) -> np.ndarray:
    """Log-decays mixing strong steps (``g`` in [-20, -18]) and weak ones (near 0), the
    hardest case for cumulative sums within a chunk."""
    weak = np.log(1 / (1 + np.exp(-(rng.normal(size=shape) + 3))))
    strong = rng.uniform(-20, -18, size=shape)
    return np.where(rng.random(shape) < 0.5, strong, weak).astype(np.float32)


def evaluate(fns: dict, inputs: tuple, cotangent_seed: int = 7):
    """One jitted program: for each ``fns[name](*inputs) -> (o, S)``, its outputs and the
    gradients of ``<o, w_o> + <S, w_S>`` (random fixed cotangents) w.r.t. every input."""

    def run(*xs):
        out = {}
        for name, fn in fns.items():
            (o, S), vjp = jax.vjp(fn, *xs)
            rng = np.random.default_rng(cotangent_seed)
            w = (jnp.asarray(rng.normal(size=o.shape), jnp.float32),
                 jnp.asarray(rng.normal(size=S.shape), jnp.float32))
            out[name] = (o, S, vjp(w))
        return out

    return jax.jit(run)(*inputs)


def compare_all(results: dict, reference: str, terms: int, names: list[str]) -> None:
    """Every mode's outputs, final state and gradients against ``results[reference]``."""
    o0, S0, g0 = results[reference]
    for mode, (o, S, grads) in results.items():
        if mode == reference:
            continue
        assert_close(o, o0, terms, f"{mode} outputs")
        assert_close(S, S0, terms, f"{mode} final state")
        for name, got, want in zip(names, grads, g0, strict=True):
            assert_close(got, want, terms, f"{mode} d/d{name}")


def segment_batch(arrays: dict, reset: np.ndarray, valid: np.ndarray, S0: np.ndarray):
    """Each row's segments (split at resets, invalid steps removed) as rows of their own.

    Args:
      arrays: name -> ``(B, T, ...)`` inputs; zero padding must be the identity update.
      reset, valid: ``(B, T)`` bool.
      S0: ``(B, H, K, V)``, the state entering each row's first segment (later ones: 0).

    Returns:
      ``(segment arrays (S, T, ...), initial states (S, H, K, V), places)``: ``places[j]``
      lists the ``(b, t)`` of segment j's steps; each row's last segment comes last.
    """
    B, T = reset.shape
    places, owners = [], []
    for b in range(B):
        current: list = []
        for t in range(T):
            if reset[b, t]:
                places.append(current)
                owners.append(b)
                current = []
            if valid[b, t]:
                current.append((b, t))
        places.append(current)
        owners.append(b)
    out = {name: np.zeros((len(places), *a.shape[1:]), a.dtype) for name, a in arrays.items()}
    states = np.zeros((len(places), *S0.shape[1:]), np.float32)
    for j, steps in enumerate(places):
        first = j == 0 or owners[j - 1] != owners[j]
        if first:
            states[j] = S0[owners[j]]
        for i, (b, t) in enumerate(steps):
            for name, a in arrays.items():
                out[name][j, i] = a[b, t]
    return out, states, places, owners


def scatter_segments(o_seg, S_seg, places, owners, B: int, T: int):
    """The segment rows' outputs put back at their ``(b, t)``, and each row's final state
    (its last segment's)."""
    o = np.zeros((B, T, *o_seg.shape[2:]), np.float32)
    S = np.zeros((B, *S_seg.shape[1:]), np.float32)
    for j, steps in enumerate(places):
        for i, (b, t) in enumerate(steps):
            o[b, t] = o_seg[j, i]
        S[owners[j]] = S_seg[j]  # later segments of the row overwrite earlier ones
    return o, S
