"""The pixel-by-pixel MNIST experiment: pixel order, a tiny run of each model kind."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqnets as sn
from experiments import pixel_mnist

TINY = {"train_examples": 96, "test_examples": 64, "epochs": 2, "batch_size": 32,
        "hidden_size": 16, "num_layers": 1, "progress": False, "learning_rate": 1e-2,
        "checkpoint_every": 1000}


def test_pixel_order_is_raster_or_one_fixed_permutation():
    np.testing.assert_array_equal(pixel_mnist.pixel_order(pixel_mnist.Config()), np.arange(784))
    permuted = pixel_mnist.pixel_order(pixel_mnist.Config(permute=True))
    np.testing.assert_array_equal(np.sort(permuted), np.arange(784))
    assert not np.array_equal(permuted, np.arange(784))
    np.testing.assert_array_equal(permuted, pixel_mnist.pixel_order(pixel_mnist.Config(permute=True)))
    other = pixel_mnist.Config(permute=True, permutation_seed=1)
    assert not np.array_equal(permuted, pixel_mnist.pixel_order(other))


def test_the_model_reads_784_steps_of_one_pixel_in_the_chosen_order():
    config = pixel_mnist.Config(permute=True, hidden_size=8, num_layers=1)
    model = pixel_mnist.make_model(config)
    params = pixel_mnist.init_params(model, jax.random.key(0))
    images = jax.random.randint(jax.random.key(1), (2, 28, 28), 0, 256).astype(jnp.uint8)
    logits = pixel_mnist.logits_fn(config, model, params, images, None)
    assert logits.shape == (2, 10)
    # The same pixels fed in raster order to the same parameters give other logits.
    raster = pixel_mnist.logits_fn(pixel_mnist.Config(hidden_size=8, num_layers=1), model,
                                   params, images, None)
    assert not np.allclose(logits, raster)
    # And the permuted run is the raster run of the permuted images.
    order = pixel_mnist.pixel_order(config)
    moved = images.reshape(2, 784)[:, order].reshape(2, 28, 28)
    np.testing.assert_allclose(logits, pixel_mnist.logits_fn(
        pixel_mnist.Config(hidden_size=8, num_layers=1), model, params, moved, None), rtol=1e-6)


def test_tiny_residual_run_learns_and_writes_its_outputs(tmp_path):
    """The smoke version of the full run below: 96 images, 2 epochs, the real pipeline."""
    config = pixel_mnist.Config(workdir=str(tmp_path), **TINY)
    results = pixel_mnist.train_and_evaluate(config, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 3), (2, 6)]
    assert records[1]["train_loss"] < records[0]["train_loss"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == results["test_accuracy"] == records[-1]["test_accuracy"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_a_classic_cell_runs_as_a_plain_stack():
    config = pixel_mnist.Config(cell="gru", model="stack", hidden_size=8, num_layers=1)
    model = pixel_mnist.make_model(config)
    assert isinstance(model, sn.Stack)
    params = pixel_mnist.init_params(model, jax.random.key(0))
    images = jnp.zeros((2, 28, 28), jnp.uint8)
    assert pixel_mnist.logits_fn(config, model, params, images, None).shape == (2, 10)


@pytest.mark.slow
def test_full_default_run_reaches_96_percent(tmp_path):
    """``python -m experiments.pixel_mnist`` with its defaults (about an hour on 2 cores).

    The one full run measured here (seed 0, 2026-11-25) reached 96.55 % (docs/pixel_mnist.md);
    the issue's 98.5 % is out of reach in four epochs. The bound leaves half a point for a
    machine whose float32 rounding differs, which after 3,748 Adam steps gives another
    trajectory (the spread over such trajectories was not measured); a broken model or
    schedule costs far more.
    """
    config = pixel_mnist.Config(progress=False, workdir=str(tmp_path))
    results = pixel_mnist.train_and_evaluate(config, tmp_path)
    assert results["test_examples"] == 10_000 and results["test_accuracy"] >= 0.96


def test_the_stack_options_read_both_ways_or_are_refused_for_the_residual_model():
    """--bidirectional and --dropout, once silently ignored (inherited from mnist_rows),
    act on --model stack and are refused for the residual model."""
    with pytest.raises(ValueError, match="--bidirectional and --dropout apply to --model stack"):
        pixel_mnist.validate(pixel_mnist.Config(bidirectional=True))
    config = pixel_mnist.Config(cell="gru", model="stack", hidden_size=8, num_layers=1,
                                bidirectional=True)
    assert pixel_mnist.validate(config) == config
    assert pixel_mnist.make_model(config).output_size == 16  # both directions
