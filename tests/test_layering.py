"""Data flows one way: each module imports only modules above it in the data's path."""

import ast
from pathlib import Path

import soundscene

PACKAGE = Path(soundscene.__file__).parent
BASE = {"config", "errors", "_io", "_version", "runtime"}  # usable from anywhere
ORDER = ["synth", "audio", "features", "data", "datasets", "cache", "runs", "models", "augment", "modelfile", "complexity", "plots",
         "evaluation", "training", "crossval", "inference", "export", "eq", "stream", "mqtt", "serve", "cli"]
APPLICATIONS = ["export", "eq", "stream", "mqtt", "serve"]  # above inference; never reach into training


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


def test_applications_never_reach_into_training():
    for module in APPLICATIONS:
        reached = _imports(module) & {"training", "crossval", "evaluation", "cache", "datasets"}
        assert not reached, f"{module} imports {reached}: applications use the inference API only"


def test_library_code_changes_no_process_wide_state():
    """tune_malloc and matplotlib backends belong to entry points (the CLI, training), never to library code."""
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert "matplotlib.use(" not in text and "import matplotlib.pyplot" not in text \
            and "from matplotlib import pyplot" not in text, f"{path.name} touches pyplot/backends"
        if path.stem not in ("runtime", "cli", "training"):
            assert "tune_malloc()" not in text, f"{path.name} calls tune_malloc()"
