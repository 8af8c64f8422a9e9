"""Cross-validation (soundscene.training.crossval): grouped folds, mean and SD over folds, resuming, and refusing
an out folder of another configuration."""

import json

import pytest

from helpers import TINY
from soundscene.config import Config
from soundscene.training.crossval import assign_grouped_folds, cross_validate
from soundscene.training.data import load_manifest
from soundscene.errors import DataError


def test_grouped_folds_for_own_data(tiny_dataset):
    m = load_manifest(tiny_dataset)
    plain = type(m)([type(i)(i.path, i.label, None, f"rec{n // 2}") for n, i in enumerate(m.items)], m.classes,
                    m.source)
    folded = assign_grouped_folds(plain, k=4)
    assert sorted({i.fold for i in folded.items}) == [1, 2, 3, 4]
    fold_of_group = {}
    for i in folded.items:
        assert fold_of_group.setdefault(i.group, i.fold) == i.fold


@pytest.mark.slow
def test_cv_over_predefined_folds_reports_mean_and_sd(tmp_path, tiny_dataset, monkeypatch):
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 2}})
    out = tmp_path / "cv"
    result = cross_validate(tiny_dataset, out_dir=out, config=cfg, progress=False)
    assert result.folds == [1, 2, 3, 4, 5]
    accs = [f["accuracy"] for f in result.per_fold]
    import numpy as np

    assert result.summary["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert result.summary["accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1))
    summary = json.loads((out / "cv_summary.json").read_text())
    assert len(summary["per_fold"]) == 5
    assert (out / "confusion_matrix_mean.png").is_file() and (out / "fold-3" / "dcase_output.tsv").is_file()
    header = (out / "fold-3" / "dcase_output.tsv").read_text().splitlines()[0].split("\t")
    assert header[:2] == ["filename", "scene_label"] and header[2:] == summary["summary"]["classes"]

    # An interrupted cross-validation continues: finished folds are not trained again.
    import soundscene.training.crossval as crossval

    (out / "fold-5" / "metrics.json").unlink()
    trained = []
    real_train = crossval.train
    monkeypatch.setattr(crossval, "train", lambda *a, **k: trained.append(k["test_fold"]) or real_train(*a, **k))
    again = cross_validate(tiny_dataset, out_dir=out, config=cfg, progress=False)
    assert trained == [5] and again.per_fold[:4] == result.per_fold[:4]


def test_cv_needs_two_folds(tmp_path, tiny_dataset):
    from soundscene.training.crossval import cross_validate

    with pytest.raises(DataError, match="at least 2 folds"):
        cross_validate(tiny_dataset, out_dir=tmp_path, config=Config.from_dict(TINY), k=1, progress=False)


def _no_groups(manifest):
    from soundscene.training.data import Manifest

    return Manifest([type(i)(i.path, i.label) for i in manifest.items], manifest.classes, manifest.source)


def test_cv_on_data_without_groups_warns(tmp_path, tiny_dataset, monkeypatch):
    import soundscene.training.crossval as crossval
    from soundscene.errors import SoundsceneWarning

    monkeypatch.setattr(crossval, "train", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.warns(SoundsceneWarning, match="gives no groups"), pytest.raises(KeyboardInterrupt):
        cross_validate(_no_groups(load_manifest(tiny_dataset)), out_dir=tmp_path / "cv", k=3,
                       config=Config.from_dict(TINY), progress=False)


def test_cv_refuses_an_out_folder_of_another_configuration(tmp_path, tiny_dataset, monkeypatch):
    import soundscene.training.crossval as crossval
    from soundscene.errors import SoundsceneError

    calls = []

    def fake_train(*args, run_dir, **kwargs):  # make a fold folder as train() would, then stop
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(kwargs["config"].to_json())
        calls.append(run_dir.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(crossval, "train", fake_train)
    out = tmp_path / "cv"
    cfg = Config.from_dict(TINY)
    with pytest.raises(KeyboardInterrupt):
        cross_validate(tiny_dataset, out_dir=out, config=cfg, progress=False)
    other = cfg.with_overrides({"train.learning_rate": 0.01})
    with pytest.raises(SoundsceneError, match=r"another configuration or data \(config\.train\.learning_rate "
                                              r"differ\).*--restart"):
        cross_validate(tiny_dataset, out_dir=out, config=other, progress=False)
    assert (out / "fold-1").is_dir()  # refused: nothing deleted
    with pytest.raises(KeyboardInterrupt):  # the same configuration continues
        cross_validate(tiny_dataset, out_dir=out, config=cfg, progress=False)
    (out / "fold-1" / "marker").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        cross_validate(tiny_dataset, out_dir=out, config=other, restart=True, progress=False)
    assert not (out / "fold-1" / "marker").exists()
    assert json.loads((out / "cv.json").read_text())["config"]["train"]["learning_rate"] == 0.01
    # folds left by a cross-validation made before cv.json existed are compared by their config.json
    (out / "cv.json").unlink()
    with pytest.raises(SoundsceneError, match="another configuration"):
        cross_validate(tiny_dataset, out_dir=out, config=cfg, progress=False)
