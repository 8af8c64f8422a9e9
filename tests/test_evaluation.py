"""Evaluation: metrics and reports, and the rule that a model is never scored on what it learnt from."""

import json

import numpy as np
import pytest

from soundscene.training.data import load_manifest
from soundscene.errors import DataError, ModelFileError
from soundscene.training.evaluation import compute_metrics, evaluate


def test_metrics_of_known_predictions():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = compute_metrics(np.array([0, 1, 1, 1]), probs, ["a", "b"])
    assert m["accuracy"] == 0.75 and m["per_class_accuracy"] == {"a": 1.0, "b": pytest.approx(2 / 3)}
    assert m["confusion_matrix"] == [[1.0, 0.0], [pytest.approx(1 / 3), pytest.approx(2 / 3)]]


def test_evaluate_leaves_out_what_the_run_trained_and_validated_on(tiny_run, tiny_dataset, tmp_path):
    split = {}
    for line in (tiny_run.run_dir / "split.csv").read_text().splitlines()[1:]:
        split[line.split(",")[4]] = split.get(line.split(",")[4], 0) + 1
    m = evaluate(tiny_run.run_dir, tiny_dataset, out_dir=tmp_path / "ev", progress=False)
    assert m["left_out"] == split["train"] + split["val"] and m["n_clips"] == split["test"]
    saved = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(saved["accuracy"])  # exactly the run's own test split
    assert "left out: " in (tmp_path / "ev" / "report.md").read_text()


def test_evaluate_recognises_training_files_by_content_wherever_they_are(tiny_run, tiny_dataset, tmp_path):
    """The model file alone (copied out of its run, data copied elsewhere) still knows what it learnt from."""
    import shutil

    model = tmp_path / "elsewhere" / "model.safetensors"
    model.parent.mkdir()
    shutil.copy(tiny_run.model_path, model)
    data = tmp_path / "copy"
    shutil.copytree(tiny_dataset.parent, data)
    m = evaluate(model, data / tiny_dataset.name, out_dir=tmp_path / "ev", progress=False)
    assert m["n_clips"] == len(load_manifest(tiny_dataset)) - m["left_out"] and m["left_out"] > 0


def test_scoring_training_clips_needs_a_flag_and_the_report_says_so(tiny_run, tiny_dataset, tmp_path):
    m = evaluate(tiny_run.run_dir, tiny_dataset, out_dir=tmp_path / "ev", include_training=True, progress=False)
    assert m["n_clips"] == len(load_manifest(tiny_dataset)) and m["training_clips_scored"] > 0
    assert "these figures are inflated" in (tmp_path / "ev" / "report.md").read_text()
    train_only = [i for i in load_manifest(tiny_dataset).items if i.fold in (1, 2)]
    from soundscene.training.data import Manifest

    with pytest.raises(DataError, match="--include-training"):
        evaluate(tiny_run.run_dir, Manifest(train_only, load_manifest(tiny_dataset).classes, "x"),
                 out_dir=tmp_path / "ev2", progress=False)


def test_skip_bad_skips_and_lists_a_row_whose_file_is_missing(tiny_run, tiny_dataset, tmp_path):
    from soundscene.training.datasets import resolve_dataset

    lines = tiny_dataset.read_text().splitlines()
    lines.insert(1, "rain/does_not_exist.wav,rain,5,ghost")
    (tiny_dataset.parent / "with_missing.csv").write_text("\n".join(lines) + "\n")
    manifest = resolve_dataset(tiny_dataset.parent / "with_missing.csv", check_files=False)
    m = evaluate(tiny_run.run_dir, manifest, out_dir=tmp_path / "ev", skip_bad=True, progress=False)
    assert len(m["skipped"]) == 1 and "does_not_exist.wav: file does not exist" in m["skipped"][0]["reason"]
    assert m["n_clips"] > 0


def test_the_official_evaluation_list_can_be_selected(tiny_run, tmp_path):
    from soundscene.training.data import Item, Manifest

    manifest = load_manifest(_tiny_labels(tiny_run))
    tau_like = Manifest([Item(i.path, i.label, None, i.group, i.where, subset="test" if i.fold == 5 else "train")
                         for i in manifest.items], manifest.classes, "tau-like")
    m = evaluate(tiny_run.run_dir, tau_like, official_test=True, out_dir=tmp_path / "ev", progress=False)
    assert m["n_clips"] == sum(i.fold == 5 for i in manifest.items) and m["left_out"] == 0
    with pytest.raises(DataError, match="no official evaluation list"):
        evaluate(tiny_run.run_dir, manifest, official_test=True, out_dir=tmp_path / "ev2", progress=False)


def _tiny_labels(run):
    from soundscene.training.data import read_split

    return read_split(run.run_dir / "split.csv")["test"][0].path.parent.parent / "labels.csv"


def test_a_model_giving_non_finite_probabilities_is_refused_before_scoring(tiny_run, tiny_dataset, tmp_path):
    from soundscene.training.evaluation import score_and_report
    from soundscene.core.modelfile import load_model_file
    from soundscene.training.cache import feature_sets

    bundle = load_model_file(tiny_run.model_path)
    sets, _ = feature_sets({"x": load_manifest(tiny_dataset).items[:4]}, bundle.config, bundle.classes,
                           use_cache=False, progress=False)
    with np.errstate(all="ignore"):
        bundle.net.backbone.classifier.bias.data[:] = float("nan")
    with pytest.raises(ModelFileError, match="non-finite"):
        score_and_report(bundle.net, bundle.config, bundle.classes, sets["x"], tmp_path, title="t")
    assert not (tmp_path / "metrics.json").exists()


def test_the_advice_for_an_over_long_file_can_be_followed(tiny_run, tiny_dataset, tmp_path):
    import numpy as np
    import soundfile as sf

    from soundscene.training.data import Item, Manifest
    from soundscene.errors import AudioError
    from soundscene.core.modelfile import load_model_file, save_model_file

    long = tmp_path / "long.wav"
    sf.write(str(long), np.sin(np.arange(8000 * 40) * 0.05).astype(np.float32) * 0.3, 8000)
    manifest = Manifest([Item(long, "rain")], ["rain"], "x")
    bundle = load_model_file(tiny_run.model_path)  # the same model, with a 30-s limit
    model = tmp_path / "strict.safetensors"
    save_model_file(model, bundle.net, bundle.config.with_overrides({"audio.max_seconds": 30.0}), bundle.classes)
    with pytest.raises(AudioError, match=r"evaluate: --max-seconds 41"):
        evaluate(model, manifest, out_dir=tmp_path / "ev", progress=False)
    m = evaluate(model, manifest, out_dir=tmp_path / "ev", max_seconds=41, progress=False)
    assert m["n_clips"] == 1


def _flac_copies(items, folder, subtypes=("PCM_16", "PCM_24")):
    """Lossless FLAC copies of items' 16-bit WAVs (16 or 24 bits: the same samples), as new Items."""
    import soundfile as sf

    from soundscene.training.data import Item

    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for k, item in enumerate(items):
        assert sf.info(str(item.path)).subtype == "PCM_16"
        data, rate = sf.read(str(item.path), dtype="int16")
        target = folder / f"{k:03d}-{item.path.stem}.flac"
        sf.write(str(target), data, rate, subtype=subtypes[k % len(subtypes)], format="FLAC")
        copies.append(Item(target, item.label, where=f"copies.csv, row {k + 2}"))
    return copies


def test_flac_copies_of_the_training_clips_are_left_out(tiny_run, tmp_path):
    """Issue 13: sample-for-sample copies in another encoding (FLAC, 16 or 24 bits) are recognised by their
    decoded audio, recorded in the model file beside the file digests, and left out like the originals."""
    import shutil

    from soundscene.training.data import Manifest, read_split

    split = read_split(tiny_run.run_dir / "split.csv")
    seen = split["train"] + split["val"]
    copies = _flac_copies(seen, tmp_path / "flac")
    classes = sorted({i.label for i in seen})
    model = tmp_path / "elsewhere" / "model.safetensors"  # out of its run folder: the model file alone knows
    model.parent.mkdir()
    shutil.copy(tiny_run.model_path, model)

    m = evaluate(model, Manifest(copies + split["test"], classes, "flac-copies"), out_dir=tmp_path / "ev",
                 progress=False)
    assert m["left_out"] == len(copies) and m["left_out_copies"] == len(copies)
    assert m["n_clips"] == len(split["test"])
    assert m["accuracy"] == pytest.approx(json.loads((tiny_run.run_dir / "metrics.json").read_text())["accuracy"])
    assert "copies in another encoding" in (tmp_path / "ev" / "report.md").read_text()
    with pytest.raises(DataError, match=f"every one of the {len(copies)} clips.*--include-training"):
        evaluate(model, Manifest(copies, classes, "only-copies"), out_dir=tmp_path / "ev2", progress=False)
    inflated = evaluate(model, Manifest(copies, classes, "only-copies"), out_dir=tmp_path / "ev3",
                        include_training=True, progress=False)
    assert inflated["n_clips"] == len(copies) and inflated["training_clips_scored"] == len(copies)


def test_a_model_file_without_audio_digests_still_evaluates(tiny_run, tmp_path):
    """Model files written before the audio digests know only file digests: copies are scored, as before."""
    from soundscene.core.modelfile import load_model_file, save_model_file
    from soundscene.training.data import Manifest, read_split

    bundle = load_model_file(tiny_run.model_path)
    assert bundle.trained_on_audio and len(bundle.trained_on_audio) == len(bundle.trained_on)
    older = save_model_file(tmp_path / "older.safetensors", bundle.net, bundle.config, bundle.classes,
                            trained_on=sorted(bundle.trained_on))
    assert not load_model_file(older).trained_on_audio
    split = read_split(tiny_run.run_dir / "split.csv")
    copies = _flac_copies(split["train"][:4], tmp_path / "flac")
    m = evaluate(older, Manifest(copies, bundle.classes, "x"), out_dir=tmp_path / "ev", progress=False)
    assert m["n_clips"] == 4 and m["left_out"] == 0


def test_evaluate_skip_bad_names_the_manifest_row_of_each_skipped_clip(tiny_run, tiny_dataset, tmp_path, capsys):
    """Issue 13: `soundscene evaluate --skip-bad` names each skipped clip with its manifest row, as training does."""
    from soundscene.cli import main

    lines = [line if n == 0 else f"{tiny_dataset.parent}/{line}"
             for n, line in enumerate(tiny_dataset.read_text().splitlines())]
    (tmp_path / "junk.wav").write_bytes(b"junk")
    lines.insert(1, f"{tmp_path / 'junk.wav'},rain,5,junk")
    manifest = tmp_path / "rows.csv"
    manifest.write_text("\n".join(lines) + "\n")
    assert main(["evaluate", str(tiny_run.run_dir), str(manifest), "--skip-bad", "--out", str(tmp_path / "ev"),
                 "--no-progress"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "junk.wav: not a readable audio file" in errors[0]
    assert f"{manifest}, row 2" in errors[0]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert f"{manifest}, row 2" in m["skipped"][0]["reason"]
