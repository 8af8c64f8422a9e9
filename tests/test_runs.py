"""The run folder (soundscene.training.runs): the one place that knows a run's layout; what a new run records
and reads back; an incomplete folder is refused in one line; a model file knows the run it sits in."""

from pathlib import Path

import pytest

from helpers import TINY
from soundscene.config import Config
from soundscene.errors import SoundsceneError
from soundscene.training.data import Item
from soundscene.training.runs import RunFolder, run_of_model

LAYOUT = {"config": "config.json", "classes": "classes.json", "split": "split.csv", "model": "model.safetensors",
          "checkpoints": "checkpoints", "last_checkpoint": "checkpoints/last.ckpt", "history": "history.json",
          "metrics": "metrics.json", "skipped": "skipped.txt", "report": "report.md",
          "confusion_matrix": "confusion_matrix.png", "training_curves": "training_curves.png"}


def _splits(root: Path) -> dict[str, list[Item]]:
    return {"train": [Item(root / "a b" / "1.wav", "park", 1, "rec1", name="a b/1.wav", digest="0" * 32),
                      Item(root / "2.wav", "metro", 2, None, device="s1")],
            "val": [Item(root / "3.wav", "park", 3, "rec3")],
            "test": [Item(root / "4.wav", "metro", None, "rec4")]}


def _fields(item: Item):
    return item.path, item.label, item.fold, item.group, item.name, item.device, item.digest


def test_paths_of_a_run_folder(tmp_path):
    run = RunFolder(str(tmp_path / "run"))  # a string is fine; nothing is read or made
    assert run.root == tmp_path / "run" and not run.root.exists()
    assert {name: getattr(run, name) for name in LAYOUT} == {name: run.root / rel for name, rel in LAYOUT.items()}
    assert not run.is_run() and not run.has_finished_epoch()


def test_what_a_new_run_records_reads_back(tmp_path):
    run = RunFolder(tmp_path / "new" / "run")
    config = Config.from_dict(TINY).with_overrides({"train.epochs": 7})
    run.write_start(config, _splits(tmp_path), ["metro", "park"])
    assert run.is_run() and not run.has_finished_epoch()
    back_config, back_splits, classes = run.read()
    assert back_config.to_dict() == config.to_dict() and classes == ["metro", "park"]
    assert {k: [_fields(i) for i in v] for k, v in back_splits.items()} == \
           {k: [_fields(i) for i in v] for k, v in _splits(tmp_path).items()}
    assert back_splits["val"][0].where == f"{run.split}, row 4"  # rows named for later error messages


def _damage(run: RunFolder, part: str):
    if part == "everything":
        for p in run.root.iterdir():
            p.unlink()
    elif part == "classes missing":
        run.classes.unlink()
    elif part == "classes half written":
        run.classes.write_text('["metro", "pa')
    elif part == "split missing":
        run.split.unlink()
    elif part == "config half written":
        run.config.write_text('{"audio": {')


@pytest.mark.parametrize("part, message", [
    ("everything", r"not a run folder \(no config\.json\)"),
    ("classes missing", r"classes\.json: missing or damaged; the run folder is incomplete"),
    ("classes half written", r"classes\.json: missing or damaged; the run folder is incomplete"),
    ("split missing", r"split\.csv: split file is missing; the run folder is incomplete"),
    ("config half written", r"not valid JSON"),
])
def test_an_incomplete_run_folder_is_refused_in_one_line(tmp_path, part, message):
    run = RunFolder(tmp_path / "run")
    run.write_start(Config.from_dict(TINY), _splits(tmp_path), ["metro", "park"])
    _damage(run, part)
    with pytest.raises(SoundsceneError, match=message) as refused:
        run.read()
    assert "\n" not in str(refused.value)


def test_a_model_file_knows_the_run_it_sits_in(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_start(Config.from_dict(TINY), _splits(tmp_path), ["metro", "park"])
    assert run_of_model(run.model) == run
    assert run_of_model(run.root / "other.safetensors") is None  # only the run's own model file
    assert run_of_model(tmp_path / "model.safetensors") is None  # a folder without a run's configuration


def test_a_trained_run_has_the_layout_and_reads_back(tiny_run):
    run = run_of_model(tiny_run.model_path)
    assert run == RunFolder(tiny_run.run_dir) and run.has_finished_epoch()
    for name in LAYOUT:
        if name != "skipped":  # written only when clips were skipped
            assert getattr(run, name).exists(), name
    config, splits, classes = run.read()
    assert config.train.epochs == TINY["train"]["epochs"] and len(classes) == 4
    assert {i.fold for i in splits["test"]} == {5}
