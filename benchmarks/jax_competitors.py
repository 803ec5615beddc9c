"""JAX competitors (seqnets and Flax linen): builders that train on the harness's arrays.

Each builder takes a `benchmarks.harness.Workload` and returns a fresh runner
(`benchmarks.runners`) that owns its training state:

* `seqnets_classifier`: a `seqnets.stack` of one cell and a linear head on the last output,
  softmax cross-entropy, Adam 1e-3, on `benchmarks.harness.classifier_data`;
* `flax_classifier`: the same with ``nn.RNN(cell_cls)`` and ``nn.Dense``;
* `seqnets_echo`: the echo experiment's model (`experiments.echo.make_model`) trained by
  truncated BPTT on `benchmarks.harness.echo_data`, Adagrad 0.3;
* `FlaxEchoLoop`: the same with ``nn.RNN(SimpleCell)``, one jitted call per window.

The PyTorch competitors are in `benchmarks.torch_competitors`.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import seqnets as sn
from benchmarks.harness import Workload, classifier_data, echo_data
from benchmarks.runners import JaxEpoch, JaxStep, JaxWindowLoop, xla_peak_memory
from experiments import echo, models
from seqnets import parallel
from seqnets.training import create_train_state, make_train_step, softmax_cross_entropy
from seqnets.training.tbptt import make_epoch_step, make_window_step, split_windows

NUM_CLASSES = 10


def seqnets_classifier(w: Workload, cell: Callable[[int], sn.Cell] = sn.lstm, devices: int = 1,
                       **scan_options) -> JaxStep:
    """`experiments.models`' stack and head on ``classifier_data``, Adam 1e-3.

    ``cell``: the cell factory (``seqnets.lstm``, ``seqnets.min_gru``...), called with
    ``w.hidden``. ``devices > 1``: the shard_map data-parallel step, a share of the batch
    per device. ``scan_options`` go to ``Stack.apply`` (``hoist``, ``mode``, ...).
    """
    model = sn.stack(cell(w.hidden))
    params = models.init_params(model, jax.random.key(0), w.inputs, NUM_CLASSES)

    def loss_fn(params, batch, key):
        x, y = batch
        _, ys = model.apply(params["rnn"], x, **scan_options)
        return softmax_cross_entropy(models.head(params, sn.final_outputs(ys)), y), {}

    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    batch = tuple(map(jnp.asarray, classifier_data(w)))
    if devices == 1:
        step = make_train_step(loss_fn, optimizer)
    else:
        mesh = parallel.data_mesh(devices)
        state, batch = parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh)
        step = parallel.make_shard_map_train_step(loss_fn, optimizer, mesh)
    return JaxStep(step, state, batch)


def flax_classifier(w: Workload, cell_cls: type[nn.RNNCellBase]) -> JaxStep:
    """``nn.RNN(cell_cls)`` and an ``nn.Dense`` head on ``classifier_data``, Adam 1e-3."""
    rnn = nn.RNN(cell_cls(features=w.hidden), return_carry=True)
    head = nn.Dense(NUM_CLASSES)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"rnn": rnn.init(k1, jnp.zeros((w.batch, w.time, w.inputs))),
              "head": head.init(k2, jnp.zeros((1, w.hidden)))}

    def loss_fn(params, batch, key):
        x, y = batch
        (_, h), _ = rnn.apply(params["rnn"], x)
        return softmax_cross_entropy(head.apply(params["head"], h), y), {}

    optimizer = optax.adam(1e-3)
    state = create_train_state(params, optimizer, jax.random.key(1))
    return JaxStep(make_train_step(loss_fn, optimizer), state,
                   tuple(map(jnp.asarray, classifier_data(w))))


def _echo_loss(model: sn.Stack, **scan_options):
    """The TBPTT loss of the echo model: ``(params, carry, (x, y), key) -> (loss, (carry, {}))``."""

    def loss_fn(params, carry, batch, key):
        x, y = batch
        carry, ys = model.apply(params["rnn"], x[..., None].astype(jnp.float32), carry=carry,
                                **scan_options)
        return softmax_cross_entropy(models.head(params, ys), y), (carry, {})

    return loss_fn


def seqnets_echo(w: Workload, fused: bool = True, **scan_options) -> JaxEpoch | JaxWindowLoop:
    """The echo experiment's model (`experiments.echo.make_model`) trained by TBPTT, Adagrad 0.3.

    ``fused``: one `make_epoch_step` call over the windows; else one `make_window_step`
    call per window.
    """
    model = echo.make_model(echo.Config(hidden_size=w.hidden))
    optimizer = optax.adagrad(0.3)
    state = create_train_state(echo.init_params(model, jax.random.key(0)), optimizer,
                               jax.random.key(1))
    windows = split_windows(tuple(map(jnp.asarray, echo_data(w))), w.time)
    loss_fn = _echo_loss(model, **scan_options)
    zero = model.initial_carry(w.batch)
    if fused:
        return JaxEpoch(make_epoch_step(loss_fn, optimizer), state, zero, windows)
    per_window = [jax.tree.map(lambda a, k=k: a[k], windows) for k in range(w.windows)]
    return JaxWindowLoop(make_window_step(loss_fn, optimizer), state, zero, per_window)


class FlaxEchoLoop:
    """``nn.RNN(SimpleCell)`` and an ``nn.Dense`` head per step, one jitted call per window."""

    def __init__(self, w: Workload):
        rnn = nn.RNN(nn.SimpleCell(features=w.hidden), return_carry=True)
        head = nn.Dense(2)
        k1, k2 = jax.random.split(jax.random.key(0))
        self.params = {"rnn": rnn.init(k1, jnp.zeros((w.batch, w.time, 1))),
                       "head": head.init(k2, jnp.zeros((1, w.hidden)))}
        optimizer = optax.adagrad(0.3)
        self.opt_state = optimizer.init(self.params)
        self.carry = jnp.zeros((w.batch, w.hidden))

        @jax.jit
        def step(params, opt_state, carry, x, y):
            def loss(params):
                new_carry, ys = rnn.apply(params["rnn"], x[..., None].astype(jnp.float32),
                                          initial_carry=carry)
                return softmax_cross_entropy(head.apply(params["head"], ys), y), new_carry

            (value, new_carry), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, new_carry, value

        self.step = step
        x, y = echo_data(w)
        self.windows = [(jnp.asarray(x[:, k * w.time:(k + 1) * w.time]),
                         jnp.asarray(y[:, k * w.time:(k + 1) * w.time])) for k in range(w.windows)]

    def __call__(self) -> None:
        for xb, yb in self.windows:
            self.params, self.opt_state, self.carry, value = self.step(
                self.params, self.opt_state, self.carry, xb, yb)
        value.block_until_ready()

    def first_batch(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a) for a in self.windows[0])

    def peak_memory(self) -> tuple[int | None, str]:
        peak, how = xla_peak_memory(self.step, self.params, self.opt_state, self.carry,
                                    *self.windows[0])
        return peak, f"{how}, one window's call"
