"""Token streams for language models: one long text as ``batch_size`` contiguous streams.

Stateful truncated BPTT (`seqnets.training.tbptt`) reads each stream in windows and
carries the recurrent state from one window to the next; `lm_streams` lays any sequence
of token ids out that way (the Penn Treebank's, a character corpus, ...).
"""

from __future__ import annotations

import numpy as np


def lm_streams(ids: np.ndarray, batch_size: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-word targets as ``batch_size`` contiguous streams (TF's ``ptb_producer``).

    The token stream is cut into ``batch_size`` rows of ``len(ids) // batch_size`` tokens;
    row ``b`` is ``ids[b * row : (b + 1) * row]``. Inputs are a row's first
    ``n * num_steps`` tokens and targets the same positions shifted by one, with
    ``n = (row - 1) // num_steps`` whole windows, so that
    `seqnets.training.tbptt.split_windows` cuts them into ``n`` windows.

    Returns:
      ``(x, y)``: int32 ``(batch_size, n * num_steps)`` each, ``y[:, t] == row[t + 1]``.

    Raises:
      ValueError: when the text is too short for one window per stream.
    """
    ids = np.asarray(ids, np.int32)
    row = len(ids) // batch_size if batch_size > 0 else 0
    windows = (row - 1) // num_steps if num_steps > 0 else 0
    if batch_size < 1 or num_steps < 1 or windows < 1:
        raise ValueError(
            f"lm_streams: {len(ids)} tokens cannot give batch_size={batch_size} streams of at "
            f"least one window of num_steps={num_steps} (+1 target); need at least "
            f"{max(batch_size, 1) * (max(num_steps, 1) + 1)} tokens."
        )
    data = ids[: batch_size * row].reshape(batch_size, row)
    usable = windows * num_steps
    return data[:, :usable], data[:, 1 : usable + 1]
