"""Penn Treebank word language model: stateful truncated BPTT on real text (Zaremba et al. 2014).

    python -m experiments.ptb                            # the paper's "small" model
    python -m experiments.ptb --config medium            # or large
    python -m experiments.ptb --smoke                    # a quick check on a slice of the data
    python -m experiments.ptb --sample 50 --temperature 0.8 --seed 1   # words from the run
    python -m experiments.ptb --help                     # every option

The configs are the paper's (Zaremba, Sutskever & Vinyals 2014, "Recurrent Neural Network
Regularization", section 4.1) as TensorFlow's tutorial ``tutorials/rnn/ptb/ptb_word_lm.py``
(tensorflow/models) sets them in ``SmallConfig``, ``MediumConfig`` and ``LargeConfig``:

    config  layers units num_steps init   max_epoch epochs lr_decay  dropout clip
    small   2      200   20        0.1    4         13     0.5       0       5
    medium  2      650   35        0.05   6         39     0.8       0.5     5
    large   2      1500  35        0.04   14        55     1/1.15    0.65    10

Batch 20, SGD at learning rate 1, multiplied by ``lr_decay`` once per epoch after
``max_epoch`` epochs; every weight initialised uniformly in ``[-init, init]`` (the LSTM
biases zero, forget bias 0, as the tutorial's ``LSTMBlockCell(forget_bias=0.0)``); the
loss is the cross-entropy summed over a window's steps and averaged over the batch
(TF's ``sequence_loss(average_across_timesteps=False)``), whose gradient is clipped to
the global norm above (the paper clips ``large`` at 10, and so does the tutorial).
Dropout (non-recurrent, a fresh mask per step) acts on the embedding output, between the
layers and before the softmax.

Training reads the training text as 20 contiguous streams in windows of ``num_steps``
(`seqnets.data.lm_streams`); the carry crosses every window with the gradient cut,
and starts from zeros at each epoch, as the tutorial's ``run_epoch``. The windows run
through `seqnets.training.tbptt.make_epoch_step`, one compiled ``lax.scan`` per call of
``--windows-per-call`` windows. Evaluation reads each split as one stream (batch 1) with
the carry crossing the whole split, as the tutorial's test model (batch 1, num_steps 1):
every token but the first is predicted once; the windows of ``--eval-window`` steps only
bound the softmax's memory.

Beyond the paper (off by default): ``--variational`` (one dropout mask per sequence, Gal
& Ghahramani 2016) with ``--recurrent-dropout``, ``--tie-weights`` (Press & Wolf 2017;
Inan et al. 2017) and ``--cell layer_norm_lstm`` (Ba et al. 2016).

The package has the shape of Flax's ``examples/lm1b``: ``configs`` (the presets, the options
and their checks), ``models`` (embedding, LSTM stack, softmax), ``input_pipeline`` (the
text as windows of streams), ``train`` (the loss, the schedule, ``evaluate`` and
``train_and_evaluate(config, workdir)``), ``sample`` (words from a trained run) and
``main`` (the command line).

Outputs in ``--workdir``: ``metrics.jsonl`` (one line per epoch), ``perplexity.png``,
``results.json``, ``config.json`` and orbax checkpoints, one per epoch (``--resume``
continues from the last one; a run killed mid-epoch redoes that epoch, bit for bit).
SIGTERM or SIGINT saves mid-epoch, after the call of ``--windows-per-call`` windows in
progress: that checkpoint also holds the carry and the epoch's running loss sum, so that
``--resume`` continues the epoch bit for bit (see `experiments.cli`).
"""

from experiments.ptb.configs import PAPER_TEST_PPL, PRESETS, Config, effective, validate
from experiments.ptb.input_pipeline import BATCH_SIZE, load_data, train_windows
from experiments.ptb.main import main
from experiments.ptb.models import (
    VOCAB_SIZE,
    forward,
    init_params,
    logits_fn,
    make_model,
    softmax_weights,
    token_nll,
    uniform,
)
from experiments.ptb.sample import sample_from_run, sample_words
from experiments.ptb.train import (
    evaluate,
    initial_state,
    make_eval_fn,
    make_loss_fn,
    make_optimizer,
    make_schedule,
    perplexity,
    saved_tree,
    train_and_evaluate,
)

__all__ = [
    "BATCH_SIZE", "PAPER_TEST_PPL", "PRESETS", "VOCAB_SIZE", "Config", "effective", "evaluate",
    "forward", "init_params", "initial_state", "load_data", "logits_fn", "main",
    "make_eval_fn", "make_loss_fn", "make_model", "make_optimizer", "make_schedule",
    "perplexity", "sample_from_run", "sample_words", "saved_tree", "softmax_weights",
    "token_nll", "train_and_evaluate", "train_windows", "uniform", "validate",
]
