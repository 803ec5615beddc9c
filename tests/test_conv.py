"""The short causal convolution with its inputs in the carry: the sequence form against
its own one-step definition run step by step, with lengths, resets, reverse and a carry.

Both sides add the same K products in the same order, so they agree to float32
rounding of one short sum (1e-6); a tap that read across a reset, or a buffer off by one
step, moves outputs by O(1).
"""

import chex
import jax
import jax.numpy as jnp
import pytest

import seqnets as sn
from seqnets.cells import conv

K, C = 4, 3


def conv_cell():
    def init(key, input_size):
        return {"w": jax.random.normal(key, (K, C)), "b": jnp.arange(C, dtype=jnp.float32)}

    def step(params, buffer, x_t):
        return conv.step(x_t, buffer, params["w"], params["b"])[::-1]

    def run(kernel, params, projected, buffer, steps, **options):
        ys, buffer = conv.sequence(projected, buffer, params["w"], params["b"], steps)
        return buffer, ys

    # The sequence form rides on a registered family whose kernel it does not call.
    return sn.make_cell(init=init, initial_carry=lambda batch: jnp.zeros((batch, K - 1, C)),
                        project=lambda params, x: x, step=step,
                        hidden_size=C, name="conv",
                        recurrence=sn.Recurrence("diagonal", run))


@pytest.mark.parametrize("reverse", [False, True])
def test_sequence_equals_the_step_by_step_definition(reverse):
    cell = conv_cell()
    params = cell.init(jax.random.key(0), C)
    xs = jax.random.normal(jax.random.key(1), (4, 9, C))
    buffer = jax.random.normal(jax.random.key(2), (4, K - 1, C))
    lengths = jnp.array([9, 5, 2, 0])
    resets = jnp.zeros((4, 9), bool).at[0, 3].set(True).at[0, 7].set(True).at[1, 4].set(True)
    options = {"carry": buffer, "lengths": lengths, "resets": resets, "reverse": reverse}
    want = sn.scan(cell._replace(recurrence=None), params, xs, **options)
    got = sn.scan(cell, params, xs, **options)
    chex.assert_trees_all_close(got, want, atol=1e-6, rtol=1e-6)
    # A reset one step late is far outside the tolerance.
    late = sn.scan(cell, params, xs, **{**options, "resets": jnp.roll(resets, 1, axis=1)})
    assert float(jnp.max(jnp.abs(late[1] - want[1]))) > 0.1
