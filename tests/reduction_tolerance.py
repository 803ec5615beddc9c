"""How far apart two data-parallel runs may end when they differ only in summation order.

A data-parallel step sums the gradient over the batch (and, for an RNN, over time) in
another order than one device does: per device first, then across devices (an
all-reduce, or Gloo between processes). Float32 addition is not associative; for a sum of
n terms in any order, |computed - exact| <= n * u * sum |terms| (u = 2^-24, the unit
roundoff; Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, eq. 4.4 with
gamma_n ~ n u). Two orders are each within that of the exact sum.

The comparison uses plain SGD: each parameter moves by ``lr * grad``, so the gradient's
rounding difference reaches the parameters unamplified. (Adam divides by sqrt(v): for an
element whose gradient is itself of the order of the rounding noise, the update's sign
flips with it, so Adam parameters may differ by up to 2 * lr per step whatever the
order, while a wrongly averaged gradient, N times too large, barely changes Adam's
update. SGD shows that bug at full size.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2


def sgd_tolerance(example_loss, params_per_step, batches, lr: float, terms: int):
    """Elementwise bound on the parameter difference after ``len(batches)`` SGD steps.

    Args:
      example_loss: ``(params, example) -> scalar``, the loss of one example; the batch
        loss is the mean over examples.
      params_per_step: the parameters before each step (one device's run).
      batches: each step's batch, a pytree with a leading example axis.
      lr: the SGD learning rate.
      terms: how many terms each gradient element sums (batch * time steps, plus the
        number of devices for the all-reduce).

    Returns:
      A pytree like the parameters: ``sum_steps lr * 2 * terms * u * mean_i |g_i|``,
      where ``g_i`` is example ``i``'s gradient (both orders may err, hence 2).
    """
    per_example = jax.jit(jax.vmap(jax.grad(example_loss), in_axes=(None, 0)))
    tol = jax.tree.map(lambda p: np.zeros(np.shape(p), np.float64), params_per_step[0])
    for params, batch in zip(params_per_step, batches, strict=True):
        grads = per_example(params, batch)
        bound = jax.tree.map(lambda g: np.asarray(jnp.abs(g).mean(0), np.float64), grads)
        tol = jax.tree.map(lambda t, b: t + lr * 2 * terms * UNIT_ROUNDOFF * b, tol, bound)
    return tol


def assert_close_within(got, want, start, tol) -> None:
    """Asserts ``|got - want| <= tol`` elementwise, and that ``tol`` could see a real bug.

    A real averaging bug changes the update by a factor (N, 1/N): the tolerance must stay
    far below the update itself, or the comparison would pass with the bug.
    """
    for name, (g, w, s, t) in enumerate(zip(*(jax.tree.leaves(x) for x in (got, want, start, tol)),
                                             strict=True)):
        g, w, s = (np.asarray(x, np.float64) for x in (g, w, s))
        worst = np.max(np.abs(g - w) - t)
        assert worst <= 0, f"leaf {name}: |got - want| exceeds the tolerance by {worst:.3g}"
        assert np.linalg.norm(t) < 0.01 * np.linalg.norm(w - s), (
            f"leaf {name}: the tolerance is not small against the update; it could hide a bug")
