"""Data flows one way: each module imports only modules above it in the data's path."""

import ast
from pathlib import Path

import soundscene

PACKAGE = Path(soundscene.__file__).parent
BASE = {"config", "errors", "_io", "_version", "runtime"}  # usable from anywhere
ORDER = ["synth", "audio", "features", "data", "datasets", "cache", "models", "modelfile", "plots",
         "evaluation", "training", "crossval", "inference", "cli"]


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_module_is_placed():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == BASE | set(ORDER)


def test_nothing_low_imports_something_high():
    for rank, module in enumerate(ORDER):
        for imported in _imports(module) - BASE:
            assert imported in ORDER[:rank], f"{module} imports {imported}, which is further down the path"
    for module in BASE - {"_version"}:
        assert _imports(module) <= BASE, f"{module} should depend on base modules only"


def test_synth_depends_on_nothing_of_ours_but_errors():
    assert _imports("synth") <= {"errors"}
