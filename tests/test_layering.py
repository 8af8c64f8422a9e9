"""The house has three floors and data flows one way.

* ``soundscene/core/``: audio, features, networks, the model file, records, inference, the timeline. It never
  loads training or an application.
* ``soundscene/training/``: data sets, the feature cache, augmentation, the loop, evaluation, cross-validation;
  built on the core.
* ``soundscene/apps/``: live streams, MQTT, the HTTP service, ONNX export, the equalizer, batch inference over
  archives (local processes, Ray); built on the core only.
* At the top: ``cli`` (over everything); beside everything: ``config``, ``errors``, ``_io``, ``_net``, ``_version``,
  ``runtime``.

Direct imports are read from the source; what a module loads *transitively* is checked in a fresh interpreter.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import soundscene

PACKAGE = Path(soundscene.__file__).parent
BASE = {"config", "errors", "_io", "_net", "_version", "runtime"}  # usable from anywhere
FLOORS = {"core": {"core"}, "training": {"core", "training"}, "apps": {"core", "apps"}}
TRAINING_MODULES = ("soundscene.training", "lightning", "sklearn")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The soundscene modules ``path`` imports (absolute dotted names), at any depth of the file."""
    name = _module_name(path)
    package = name.split(".") if path.stem == "__init__" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("soundscene"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("soundscene"))
    return found


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "soundscene"


def _sources():
    return [p for p in PACKAGE.rglob("*.py")]


def test_every_module_lives_on_a_floor():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == BASE | {"cli"}, "new modules belong in core/, training/ or apps/"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")} == set(FLOORS)


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_each_floor_imports_only_itself_the_floors_below_and_base(floor):
    for path in (PACKAGE / floor).rglob("*.py"):
        for imported in _imports(path):
            target = _floor(imported)
            if target in BASE or imported == "soundscene":
                continue
            assert target in FLOORS[floor], f"{_module_name(path)} imports {imported}"


def test_base_modules_depend_on_base_only():
    for name in BASE - {"_version"}:
        for imported in _imports(PACKAGE / f"{name}.py"):
            assert _floor(imported) in BASE, f"{name} imports {imported}"


def _loaded_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _training_loaded(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("lightning", "sklearn")
            or m == "soundscene.training" or m.startswith("soundscene.training.")}


CORE_AND_APPS = sorted(_module_name(p) for p in _sources()  # not Alembic's env.py: Alembic runs it, nobody imports it
                       if _floor(_module_name(p)) in ("core", "apps") and p.stem != "__init__"
                       and not (p.parent.name == "migrations" and p.stem == "env"))


def test_core_and_applications_never_load_training_even_transitively():
    """One interpreter per module would take a minute; one that imports them one at a time, recording what
    each pulls in, finds the same culprits."""
    code = ("import importlib\nseen = {}\nfor name in %r:\n    before = set(sys.modules)\n"
            "    importlib.import_module(name)\n    seen[name] = sorted(set(sys.modules) - before)\n"
            "print(json.dumps(seen))" % (CORE_AND_APPS,))
    script = f"import sys, json\n{code}"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out.strip().splitlines()[0])
    for name, loaded in seen.items():
        assert not _training_loaded(set(loaded)), f"{name} loads {sorted(_training_loaded(set(loaded)))[:5]}"


def test_inference_loads_no_training_in_a_fresh_interpreter():
    assert not _training_loaded(_loaded_after("import soundscene.core.inference"))


def test_predict_help_loads_no_training():
    code = ("import contextlib, io\nfrom soundscene.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['predict', '--help'])\n    except SystemExit:\n        pass")
    assert not _training_loaded(_loaded_after(code))


@pytest.mark.parametrize("command", ["serve", "listen"])
def test_serve_and_listen_run_without_lightning(command, tiny_run):
    """Lightning and scikit-learn blocked from import: the applications still load a model and work."""
    code = f"""
import sys
sys.modules['lightning'] = None
sys.modules['sklearn'] = None
import numpy as np
from soundscene.core.inference import SceneClassifier
clf = SceneClassifier.from_file({str(tiny_run.model_path)!r})
if {command!r} == 'serve':
    from fastapi.testclient import TestClient
    from soundscene.apps.serve import create_app
    assert TestClient(create_app(clf)).get('/v1/model').json()['classes'] == clf.classes
else:
    from soundscene.apps.listen import listen
    rng = np.random.default_rng(0)
    blocks = [0.1 * rng.standard_normal((1, 4000)).astype(np.float32) for _ in range(20)]
    got = []
    listen(clf, blocks, input_rate=clf.sample_rate, channels=1, on_decision=[got.append])
    assert got and got[0]['label'] in clf.classes
"""
    assert not _training_loaded(_loaded_after(code))


HEAVY = ("torch", "lightning", "sklearn", "matplotlib", "librosa", "numba", "safetensors")
SENSOR_MODULES = ("soundscene.cli", "soundscene.core.inference", "soundscene.core.onnxmodel", "soundscene.core.stream",
                  "soundscene.core.levels", "soundscene.core.records", "soundscene.apps.listen",
                  "soundscene.apps.mqtt", "soundscene.apps.broker", "soundscene.apps.spool",
                  "soundscene.apps.sensor.run", "soundscene.apps.sensor.check", "soundscene.apps.sensor.settings")


def test_the_sensor_loads_no_training_stack():
    """What `listen MODEL.onnx` runs (the CLI, the ONNX classifier, the stream, levels, records, MQTT) imports
    none of torch, Lightning, scikit-learn, matplotlib, librosa, numba or safetensors: `pip install
    "soundscene[sensor]"` installs none of them (test_sensor.py builds that environment for real).
    PyOctaveBand imports numba when it is there: it is blocked here, as a sensor has none."""
    code = "sys.modules['numba'] = None\n" + "\n".join(f"import {m}" for m in SENSOR_MODULES)
    code += "\nfrom soundscene.core.levels import LevelMeter\nLevelMeter(48000).push_channels(__import__('numpy').zeros((1, 48000), 'float32'))"
    loaded = _loaded_after(code)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_library_code_changes_no_process_wide_state():
    """tune_malloc and matplotlib backends belong to entry points (the CLI, training), never to library code."""
    for path in _sources():
        text = path.read_text()
        assert "matplotlib.use(" not in text and "import matplotlib.pyplot" not in text \
            and "from matplotlib import pyplot" not in text, f"{path.name} touches pyplot/backends"
        if path.stem not in ("runtime", "cli", "loop"):
            assert "tune_malloc()" not in text, f"{path.name} calls tune_malloc()"
