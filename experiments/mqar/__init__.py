"""Multi-query associative recall (MQAR, Arora et al. 2023, "Zoology"): which recurrence
remembers what.

    python -m experiments.mqar                      # the default grid, every cell (~30 min)
    python -m experiments.mqar --full               # lengths 64-256, 4-64 pairs
    python -m experiments.mqar --cells lstm gated_delta_net --pairs 4 8
    python -m experiments.mqar --smoke              # a quick check (used by the tests)

For each cell of ``--cells`` it trains a 2-layer model (`experiments.mqar.models`: each
layer the recurrence, then a gated MLP, with pre-norm and residual) with one recipe on
sequences of the grid's largest length holding a mixture of pair counts
(`experiments.mqar.input_pipeline`), then scores the queries of held-out sequences at
every (length, pairs) of the grid. Training, checkpoints, ``--resume`` and the per-cell
outputs are the classification trainer's (`experiments.classification`); the run writes
``results.json`` (its ``"runs"``: one record per cell and grid point), ``results.md`` and
``mqar.png`` in ``--workdir``. docs/mqar.md has the results.

Modules as in Flax's examples: ``configs``, ``input_pipeline``, ``models``, ``train``,
``main``.
"""

from experiments.mqar.configs import Config, validate
from experiments.mqar.main import main
from experiments.mqar.train import train_and_evaluate

__all__ = ["Config", "main", "train_and_evaluate", "validate"]
