"""Names (issue 25, section 8): seqnets.training after `import seqnets`, the runner module
that the function `scan` no longer hides, lm_streams where a generic helper belongs."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import seqnets as sn

ROOT = Path(__file__).resolve().parents[1]


def test_subpackages_without_an_import_of_their_own():
    # A fresh interpreter: in this one, other tests have imported them already.
    code = ("import seqnets\n"
            "state = seqnets.training.create_train_state\n"
            "assert seqnets.interop.from_nnx and seqnets.data.lm_streams and seqnets.layers\n"
            "assert 'training' in dir(seqnets)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with pytest.raises(AttributeError, match="has no attribute 'trainig'"):
        sn.trainig  # noqa: B018


def test_the_runner_module_is_not_hidden_by_the_function():
    import seqnets.sequence.runner as runner

    assert runner.scan is sn.scan is sn.sequence.scan
    with pytest.warns(DeprecationWarning, match=r"seqnets\.sequence\.scan is deprecated.*"
                                                r"seqnets\.sequence\.runner\.scan"):
        from seqnets.sequence.scan import scan
    assert scan is sn.scan


def test_lm_streams_lives_in_seqnets_data():
    ids = np.arange(101)
    x, y = sn.data.lm_streams(ids, 4, 5)
    np.testing.assert_array_equal(y, x + 1)
    from seqnets.data import ptb

    with pytest.warns(DeprecationWarning, match=r"use seqnets\.data\.lm_streams"):
        old = ptb.lm_streams(ids, 4, 5)
    np.testing.assert_array_equal(old[0], x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sn.data.lm_streams(ids, 4, 5)  # the new name does not warn
