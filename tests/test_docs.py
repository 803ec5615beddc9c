"""Every Python example in docs/ and README runs (each page's blocks in order, in one namespace).

Docstring examples run as doctests (``--doctest-modules`` in pyproject.toml).
"""

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(p for p in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
               if BLOCK.search(p.read_text()))


def test_the_pages_with_examples_are_found():
    names = {p.name for p in PAGES}
    assert {"index.md", "cells.md", "scan.md", "interop.md", "tf1.md", "echo.md",
            "parallel.md", "README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page):
    namespace = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(BLOCK.findall(page.read_text()), 1):
        code = compile(block, f"{page.name}, example {number}", "exec")
        exec(code, namespace)
