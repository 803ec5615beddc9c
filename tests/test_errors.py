"""Every bad input raises a ValueError that names what was expected and what came."""

import jax
import jax.numpy as jnp
import numpy as np
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


def test_a_complex_carry_for_a_real_cell_is_refused(lstm):
    """It used to lose its imaginary part with only a JAX warning (issue 24, section 8)."""
    cell, params = lstm
    carry = tuple(c.astype(jnp.complex64) + 1j for c in cell.initial_carry(2))
    with pytest.raises(ValueError, match="complex64 array where the cell's carry is float32"):
        sn.scan(cell, params, jnp.ones((2, 5, 3)), carry=carry)
    lru = sn.lru(4)  # a complex carry where the cell's is complex is fine
    sn.scan(lru, lru.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)),
            carry=lru.initial_carry(2) + 1j)


def test_numpy_integers_count_as_ints():
    """np.int64, what configs and arrays give, was refused (issue 24, section 8)."""
    cell = sn.min_gru(np.int64(4))
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 9, 3))
    _, want = sn.scan(cell, params, xs)
    _, got = sn.scan(cell, params, xs, mode="chunked", chunk_size=np.int64(3),
                     checkpoint=np.int64(4))
    np.testing.assert_allclose(got, want, atol=1e-6)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size must be a positive int"):
            sn.scan(cell, params, xs, mode="chunked", chunk_size=bad)


def test_final_outputs_checks_its_lengths_and_empty_sequences():
    """T = 0 raised IndexError; lengths out of range or of the wrong shape went unchecked."""
    ys = jnp.ones((2, 4, 3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, time\] = \[0, 4\]"):
        sn.final_outputs(ys, lengths=jnp.array([99, -3]))
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(2,\); got shape \(3,\)"):
        sn.final_outputs(ys, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match="ys has no time steps"):
        sn.final_outputs(ys[:, :0])
    np.testing.assert_array_equal(sn.final_outputs(ys[:, :0], lengths=jnp.array([0, 0])), 0.0)
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        sn.final_outputs(ys[0])
