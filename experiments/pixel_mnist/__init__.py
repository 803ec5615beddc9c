"""Sequential MNIST: each image read one pixel at a time, 784 steps of one input.

    python -m experiments.pixel_mnist                   # sMNIST, residual linear recurrences
    python -m experiments.pixel_mnist --permute         # psMNIST: one fixed pixel permutation
    python -m experiments.pixel_mnist --cell lstm --num-layers 1 --model stack
    python -m experiments.pixel_mnist --smoke           # a quick check on a subset

The default model is a residual stack of linear recurrent blocks (norm, recurrence,
gated MLP, as in the LRU and Griffin papers: `seqnets.layers.residual_block`) over a
linear encoder of each pixel, with the time-mean of the last block's output as the
classifier's features. ``--model stack`` runs a plain `seqnets.stack` of any cell (the
classic cells' set-up: the head reads the last step). Training, evaluation, outputs,
checkpoints and ``--resume`` are the classification trainer's
(`experiments.classification`), MNIST's input pipeline `experiments.mnist_data`.

Modules as in Flax's examples: ``configs``, ``models``, ``train``, ``main``.
"""

from experiments.pixel_mnist.configs import Config, validate
from experiments.pixel_mnist.main import main
from experiments.pixel_mnist.models import PIXELS, init_params, logits_fn, make_model, pixel_order
from experiments.pixel_mnist.train import task, train_and_evaluate

__all__ = ["PIXELS", "Config", "init_params", "logits_fn", "main", "make_model", "pixel_order",
           "task", "train_and_evaluate", "validate"]
