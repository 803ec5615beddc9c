"""The classification trainer (`experiments.classification`) on a token-classification task
with a loss on some positions only, as MQAR will use it: masked positions do not count,
the test figures weigh each batch by its mask, and a run trains and writes its outputs."""

import json

import jax
import jax.numpy as jnp
import numpy as np

import seqnets as sn
from experiments import classification, models
from seqnets.parallel import data_mesh
from seqnets.training import create_train_state

VOCAB, TIME = 4, 6


def token_task(examples: int = 64, seed: int = 0) -> classification.Data:
    """Label = the input token one step earlier; only the odd positions are queried."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (examples, TIME))
    labels = np.roll(tokens, 1, axis=1)
    mask = np.zeros((examples, TIME), np.float32)
    mask[:, 1::2] = 1.0
    inputs = np.eye(VOCAB, dtype=np.float32)[tokens]  # (examples, TIME, VOCAB)
    return classification.Data(train=(inputs, labels, mask), test=(inputs, labels, mask),
                               source="synthetic")


def make_task(data: classification.Data) -> classification.Task:
    model = sn.stack(sn.gru(16))

    def logits(params, inputs, key):
        _, ys = model.apply(params["rnn"], inputs)
        return models.head(params, ys)  # (batch, TIME, VOCAB): a label per position

    return classification.Task(
        init_params=lambda key: models.init_params(model, key, VOCAB, VOCAB), logits=logits,
        load_data=lambda: data, title="tokens")


def test_masked_positions_do_not_count_and_evaluation_weighs_batches_by_their_mask():
    data = token_task()
    task = make_task(data)
    config = classification.TrainConfig(epochs=1, batch_size=16, progress=False)
    optimizer = classification.make_optimizer(config, 4)
    mesh = data_mesh(1)
    train_step, eval_step = classification.make_steps(task, optimizer, mesh)
    state = create_train_state(task.init_params(jax.random.key(0)), optimizer, jax.random.key(1))
    inputs, labels, mask = (a[:16] for a in data.train)
    other = np.where(mask > 0, labels, (labels + 1) % VOCAB)  # other labels where unmasked
    queried = labels.copy()
    queried[0, 1] = (labels[0, 1] + 1) % VOCAB  # one queried label changed
    metrics = [{k: float(v) for k, v in eval_step(state.params, (inputs, y, mask)).items()}
               for y in (labels, other, queried)]
    assert metrics[0] == metrics[1]  # bit for bit: the masked positions weigh exactly 0
    assert metrics[0]["loss"] != metrics[2]["loss"]
    # (train_step donates its state: each call gets its own copy)
    stepped = [train_step(jax.tree.map(jnp.copy, state), (inputs, y, mask))[0].params
               for y in (labels, other)]
    jax.tree.map(np.testing.assert_array_equal, *stepped)

    # Batches whose masks hold 1, 2, 4 and 6 positions: each weighs as much as its
    # positions, so the mean over batches of 16 equals the mean over all 64 examples at once
    # (float32 sums in another order: a few ulps).
    uneven = np.zeros((64, TIME), np.float32)
    for k, positions in enumerate((1, 2, 4, 6)):
        uneven[16 * k : 16 * (k + 1), :positions] = 1.0
    arrays = (*data.test[:2], uneven)
    sharp = jax.tree.map(lambda p: 10 * p, state.params)  # losses that differ by position
    at_once = jax.device_get(eval_step(sharp, arrays))
    loss, acc = classification.evaluate(eval_step, sharp, arrays, mesh, batch_size=16)
    np.testing.assert_allclose([loss, acc], [at_once["loss"], at_once["accuracy"]], rtol=1e-6)
    by_examples = np.mean([float(eval_step(sharp, tuple(a[i : i + 16] for a in arrays))["loss"])
                           for i in range(0, 64, 16)])
    assert abs(by_examples - loss) > 1e-2 * loss  # the weighting matters: the test can fail


def test_a_token_task_trains_and_writes_its_outputs(tmp_path):
    config = classification.TrainConfig(epochs=3, batch_size=16, learning_rate=3e-2,
                                        schedule="constant", progress=False, devices=1,
                                        workdir=str(tmp_path))
    results = classification.train_and_evaluate(config, tmp_path, make_task(token_task()))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert results["test_accuracy"] == records[-1]["test_accuracy"] > 0.5  # chance: 0.25
    assert json.loads((tmp_path / "results.json").read_text())["train_examples"] == 64
    assert jnp.isfinite(results["test_loss"])
