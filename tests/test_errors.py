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


# Issue 25, section 7: errors that leaked internals, each written as the user wrote it.


def test_a_cells_carry_or_params_passed_to_a_stack():
    cell = sn.lstm(4)
    model = sn.stack(cell, num_layers=2)
    params = model.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 5, 3))
    # Was: TypeError: JAX does not support string indexing; got idx='forward'.
    with pytest.raises(ValueError, match=r"carry must be a list with one dict per layer.*got "
                                         r"a tuple of 2 arrays.*single cell's carry"):
        model.apply(params, xs, carry=cell.initial_carry(2))
    # Was: "params has 3 layers; the stack has 2" (it counted the dict's keys).
    with pytest.raises(ValueError, match=r"params must be a list with one dict per layer.*"
                                         r"got a dict with keys \['b', 'w_h', 'w_x'\]"):
        model.apply(cell.init(jax.random.key(0), 3), xs)


def test_a_list_carry_instead_of_a_tuple(lstm):
    cell, params = lstm
    c, h = cell.initial_carry(2)
    # Was: expected PyTreeDef((*, *)), got PyTreeDef([*, *]).
    with pytest.raises(ValueError, match=r"it is a list of 2 arrays; this cell.s carry is "
                                         r"a tuple of 2 arrays.*Pass it as a tuple"):
        sn.scan(cell, params, jnp.ones((2, 5, 3)), carry=[c, h])


def test_cell_step_called_on_a_raw_input(lstm):
    cell, params = lstm
    # Was a raw broadcasting error.
    with pytest.raises(ValueError, match=r"lstm.step takes the projected input.*"
                                         r"lstm.apply\(params, carry, x_t\)"):
        cell.step(params, cell.initial_carry(2), jnp.ones((2, 3)))


def leaky(step, hidden_size=4):
    return sn.make_cell(
        init=lambda key, n: {"w": jax.random.normal(key, (n, 4))},
        initial_carry=lambda batch: jnp.zeros((batch, 4)),
        project=lambda params, x: x @ params["w"],
        step=step, hidden_size=hidden_size, name="leaky")


def test_a_custom_step_that_returns_one_array():
    cell = leaky(lambda params, h, p: jnp.tanh(0.5 * h + p))
    # Was: "scan body output must be a pair, got float32[2,4]".
    with pytest.raises(ValueError, match=r"step of the 'leaky' cell must return a pair "
                                         r"\(carry, output\); it returned a float32\[2, 4\] array"):
        sn.scan(cell, cell.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))


def test_a_declared_hidden_size_that_differs_from_the_outputs():
    def step(params, h, p):
        h = jnp.tanh(0.5 * h + p)
        return h, h

    cell = leaky(step, hidden_size=6)
    # Was unchecked, and stack.output_size then reported 6.
    with pytest.raises(ValueError, match=r"declares hidden_size=6, but its step returns outputs "
                                         r"of width 4"):
        sn.scan(cell, cell.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="declares hidden_size=6"):
        model = sn.stack(cell, num_layers=2)
        model.apply(model.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))


def test_a_tbptt_loss_that_returns_loss_and_carry():
    import optax

    from seqnets.training import create_train_state
    from seqnets.training.tbptt import make_window_step

    cell = sn.gru(4)

    def loss_fn(params, carry, batch, key):
        carry, ys = sn.scan(cell, params, batch, carry=carry)
        return jnp.mean(ys**2), carry  # should be (loss, (carry, metrics))

    optimizer = optax.sgd(0.1)
    state = create_train_state(cell.init(jax.random.key(0), 3), optimizer, jax.random.key(1))
    step = make_window_step(loss_fn, optimizer)
    # Was: 'DynamicJaxprTracer' object is not a mapping.
    with pytest.raises(ValueError, match=r"must return \(loss, \(carry, metrics\)\).*returned "
                                         r"\(loss, one array of shape \(2, 4\)\).*"
                                         r"\(loss, \(carry, \{\}\)\)"):
        step(state, cell.initial_carry(2), jnp.ones((2, 5, 3)))
