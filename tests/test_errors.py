"""Every bad input raises a ValueError that names what was expected and what came."""

import jax
import jax.numpy as jnp
import pytest

import seqnets as sn


@pytest.fixture
def lstm():
    cell = sn.lstm(4)
    return cell, cell.init(jax.random.key(0), 3)


def test_xs_of_wrong_rank(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"\(batch, time, input_size\); got shape \(5, 3\)"):
        sn.scan(cell, params, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"\(time, batch, input_size\)"):
        sn.scan(cell, params, jnp.ones((5,)), time_major=True)


def test_input_size_mismatch(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"expect inputs of shape \(\.\.\., 3\); got shape \(2, 5, 7\)"):
        sn.scan(cell, params, jnp.ones((2, 5, 7)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\); got shape \(2, 7\)"):
        cell.apply(params, cell.initial_carry(2), jnp.ones((2, 7)))


def test_apply_needs_a_batch_of_single_steps(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"\(batch, input_size\); got shape \(2, 5, 3\)"):
        cell.apply(params, cell.initial_carry(2), jnp.ones((2, 5, 3)))


def test_carry_of_the_wrong_batch(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"expected \(2, 4\).*got \(5, 4\)"):
        sn.scan(cell, params, jnp.ones((2, 5, 3)), carry=cell.initial_carry(5))
    with pytest.raises(ValueError, match=r"expected \(3, 4\).*got \(2, 4\)"):
        cell.apply(params, cell.initial_carry(2), jnp.ones((3, 3)))


def test_carry_of_the_wrong_structure(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match="wrong structure"):
        sn.scan(cell, params, jnp.ones((2, 5, 3)), carry=jnp.zeros((2, 4)))


def test_lengths_out_of_range(lstm):
    cell, params = lstm
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"\[0, time\] = \[0, 5\]; got values in \[0, 6\]"):
        sn.scan(cell, params, xs, lengths=jnp.array([6, 0]))
    with pytest.raises(ValueError, match=r"\[0, 5\]; got values in \[-1, 2\]"):
        sn.scan(cell, params, xs, lengths=jnp.array([-1, 2]))


def test_lengths_of_wrong_shape_or_dtype(lstm):
    cell, params = lstm
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(2,\); got shape \(3,\)"):
        sn.scan(cell, params, xs, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match="integers; got dtype float32"):
        sn.scan(cell, params, xs, lengths=jnp.array([1.0, 2.0]))


def test_resets_of_wrong_shape_or_dtype(lstm):
    cell, params = lstm
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"\(batch, time\) = \(2, 5\); got shape \(5, 2\)"):
        sn.scan(cell, params, xs, resets=jnp.zeros((5, 2), bool))
    with pytest.raises(ValueError, match="booleans; got dtype int32"):
        sn.scan(cell, params, xs, resets=jnp.zeros((2, 5), jnp.int32))


def test_complex_inputs_are_refused(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match="real numbers"):
        sn.scan(cell, params, jnp.ones((2, 5, 3), jnp.complex64))
