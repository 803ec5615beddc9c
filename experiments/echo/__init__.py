"""Echo-RNN with stateful truncated BPTT: repeat a random bit stream ``echo_step`` steps later.

    python -m experiments.echo                      # the tutorial's set-up, keep vs reset
    python -m experiments.echo --echo-step 20 --cell lstm --carry keep
    python -m experiments.echo --help               # every option

The tutorial set-up: a 50,000-bit series cut into 5 contiguous rows, windows of 15 steps,
an Elman network with 4 units, 2 classes, Adagrad 0.3, 100 epochs of fresh data, the carry
zeroed at each epoch's start and carried from each window into the next. Each epoch runs
as one compiled ``lax.scan`` over its windows (``--loop python`` runs one jitted call per
window instead, with the same arithmetic).

``--carry both`` (the default) trains with the carry kept across windows and with it reset
at every window, and reports both. Accuracy is measured on a fresh series, separately for
the positions whose echo source lies in the same row ("knowable") and for the first
``echo_step`` positions of each row, which no state can know.

Modules as in Flax's examples: ``configs``, ``models`` (the stack, its head and the TBPTT
loss), ``input_pipeline`` (the bit streams), ``train`` (``train``, ``evaluate``,
``train_and_evaluate(config, workdir)``), ``main``.
"""

from experiments.echo.configs import Config, effective, validate
from experiments.echo.input_pipeline import series
from experiments.echo.main import main
from experiments.echo.models import init_params, make_loss_fn, make_model
from experiments.echo.train import TrainResult, evaluate, train, train_and_evaluate

__all__ = ["Config", "TrainResult", "effective", "evaluate", "init_params", "main",
           "make_loss_fn", "make_model", "series", "train", "train_and_evaluate", "validate"]
