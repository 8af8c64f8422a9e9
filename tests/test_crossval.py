import json

import pytest

from conftest import TINY
from soundscene.config import Config
from soundscene.crossval import assign_grouped_folds, cross_validate
from soundscene.data import load_manifest


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
    import soundscene.crossval as crossval

    (out / "fold-5" / "metrics.json").unlink()
    trained = []
    real_train = crossval.train
    monkeypatch.setattr(crossval, "train", lambda *a, **k: trained.append(k["test_fold"]) or real_train(*a, **k))
    again = cross_validate(tiny_dataset, out_dir=out, config=cfg, progress=False)
    assert trained == [5] and again.per_fold[:4] == result.per_fold[:4]
