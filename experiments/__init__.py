"""Experiments, run as ``python -m experiments.NAME`` (``--help`` lists every option)."""
