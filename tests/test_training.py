"""Training (soundscene.training.loop): what a run writes, reproducibility, resuming, the loss and schedules.

How a clip that cannot be used stops a run or is skipped and listed is specified in test_cache.py.
"""

import json

import pytest

from helpers import TINY, two_class_folder
from soundscene.config import Config
from soundscene.errors import AudioError, SoundsceneError
from soundscene.training.data import load_manifest
from soundscene.training.loop import train


def test_tiny_run_writes_everything_and_learns(tiny_run):
    run = tiny_run.run_dir
    for name in ("model.safetensors", "metrics.json", "report.md", "confusion_matrix.png", "training_curves.png",
                 "history.json", "predictions.csv", "split.csv", "config.json", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_clips"] == 8  # fold 5: 2 clips x 4 classes
    assert metrics["accuracy"] > 0.5  # chance is 0.25
    assert len(tiny_run.history) == TINY["train"]["epochs"]
    assert (run / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = max(tiny_run.history, key=lambda h: (h["val_acc"], -h["val_loss"]))
    assert tiny_run.best_epoch == best["epoch"]


def test_same_seed_same_result(tmp_path, tiny_dataset):
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 2}})
    a = train(tiny_dataset, run_dir=tmp_path / "a", config=cfg, test_fold=5, progress=False)
    b = train(tiny_dataset, run_dir=tmp_path / "b", config=cfg, test_fold=5, progress=False)
    assert a.history == b.history


def test_existing_run_folder_is_not_overwritten(tiny_run, tiny_dataset):
    with pytest.raises(SoundsceneError, match="already holds a run.*--resume"):
        train(tiny_dataset, run_dir=tiny_run.run_dir, config=Config.from_dict(TINY), progress=False)


def test_crash_loses_at_most_one_epoch_and_resume_continues(tmp_path, tiny_dataset, monkeypatch):
    import lightning as L

    import soundscene.training.loop as training

    class Crash(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:  # during the second epoch's end, before its checkpoint
                raise RuntimeError("simulated crash")

    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 3}})
    run = tmp_path / "run"
    original = training._trainer

    def crashing(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(Crash())
        return trainer

    monkeypatch.setattr(training, "_trainer", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_dataset, run_dir=run, config=cfg, test_fold=5, progress=False)
    monkeypatch.setattr(training, "_trainer", original)
    assert (run / "checkpoints" / "last.ckpt").is_file()

    resumed = train(run_dir=run, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]

    # Extending a finished run continues from its last epoch.
    longer = train(run_dir=run, resume=True, epochs=4, progress=False)
    assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4]
    assert longer.history[:3] == resumed.history


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(SoundsceneError, match="not a run folder"):
        train(run_dir=tmp_path, resume=True, progress=False)


def test_resume_refuses_damaged_or_mismatched_checkpoints(tmp_path, tiny_dataset):
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 1}})
    run = tmp_path / "run"
    train(tiny_dataset, run_dir=run, config=cfg, test_fold=5, progress=False)
    config_text = (run / "config.json").read_text()
    edited = json.loads(config_text)
    edited["model"]["params"]["widths"] = [4, 8, 16]
    (run / "config.json").write_text(json.dumps(edited))
    with pytest.raises(SoundsceneError, match="does not fit the run's configuration"):
        train(run_dir=run, resume=True, epochs=2, progress=False)
    (run / "config.json").write_text(config_text)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(SoundsceneError, match="checkpoint cannot be read"):
        train(run_dir=run, resume=True, epochs=2, progress=False)


def test_a_run_that_failed_before_its_first_epoch_can_be_started_again(tmp_path):
    from soundscene.training.loop import train

    root = two_class_folder(tmp_path / "d", per_class=6)
    bad = root / "park" / "9.wav"
    bad.write_bytes(b"not audio")
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 1}})
    with pytest.raises(AudioError, match="9.wav"):
        train(root, run_dir=tmp_path / "run", config=cfg, test_fraction=0.34, progress=False)
    bad.unlink()
    result = train(root, run_dir=tmp_path / "run", config=cfg, test_fraction=0.34, progress=False)
    assert result.model_path.is_file()


def test_skip_bad_also_covers_the_clip_length_from_the_data(tmp_path):
    from soundscene.training.loop import prepare_run

    root = two_class_folder(tmp_path / "d", per_class=6)
    (root / "park" / "9.wav").write_bytes(b"not audio")
    cfg = Config.from_dict({"audio": {"sample_rate": 8000, "min_seconds": 0.2},
                            "features": {"patch_frames": 32, "patch_hop_frames": 16}})
    from soundscene.training.data import median_duration

    with pytest.raises(AudioError):
        median_duration(load_manifest(root).items)
    fixed, _, _ = prepare_run(root, tmp_path / "b", config=cfg, test_fraction=0.34, skip_bad=True)
    assert fixed.audio.clip_seconds == 1.5


def test_the_loss_takes_soft_targets():
    import torch

    from soundscene.training.loop import soft_cross_entropy

    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, labels))
    torch.testing.assert_close(soft_cross_entropy(logits, labels), torch.nn.functional.cross_entropy(logits, labels))
    soft = torch.full((5, 3), 1 / 3)
    expected = -(torch.log_softmax(logits, -1).mean(-1)).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, soft), expected)


def test_learning_rate_warms_up_then_follows_its_schedule():
    from soundscene.training.loop import lr_factor

    kw = dict(total_steps=100, warmup_steps=10, steps_per_epoch=10)
    assert [round(lr_factor(s, schedule="cosine", **kw), 2) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, schedule="cosine", **kw) == 1.0 and lr_factor(55, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_factor(100, schedule="cosine", **kw) == pytest.approx(0.0)
    assert lr_factor(50, schedule="constant", **kw) == 1.0
    assert lr_factor(35, schedule="step", step_epochs=3, step_gamma=0.5, **kw) == 0.5


def test_averaged_weights_are_the_model_and_every_rule_is_scored(tmp_path, tiny_dataset):
    from safetensors import safe_open

    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 3, "ema_decay": 0.9, "selection": "ema",
                                              "schedule": "cosine", "warmup_epochs": 1.0, "grad_clip": 1.0,
                                              "optimizer": "adamw"},
                            "augment": {"mixup_alpha": 0.4, "time_masks": 1, "gain_db": 3.0}})
    result = train(tiny_dataset, run_dir=tmp_path / "run", config=cfg, test_fold=5, progress=False)
    with safe_open(str(result.model_path), framework="pt") as f:
        meta = f.metadata()
    assert meta["selection"] == "ema" and meta["best_epoch"] == "3"
    assert set(result.test_metrics["selection_rules"]) == {"best_val", "last", "ema"}
    assert result.test_metrics["selection_rules"]["ema"] == pytest.approx(result.test_metrics["accuracy"])
    assert all("ema_val_acc" in h and "lr" in h for h in result.history)
    lrs = [h["lr"] for h in result.history]  # at each epoch's end: warmed up, then the cosine comes down to 0
    assert lrs[0] == pytest.approx(cfg.train.learning_rate, rel=0.05) and lrs[0] > lrs[1] > lrs[2]
    assert lrs[2] < 0.01 * lrs[0]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_trains_and_writes_one_model(tmp_path, tiny_dataset):
    """soundscene train ... --accelerator cpu --devices 2 (DDP on the gloo backend) runs to the end."""
    import subprocess
    import sys

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "train": {**TINY["train"], "epochs": 2}}))
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "train", str(tiny_dataset), "--out",
                             str(tmp_path / "run"), "--config", str(cfg), "--test-fold", "5", "--accelerator", "cpu",
                             "--devices", "2", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "accuracy" in result.stdout
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert (tmp_path / "run" / "model.safetensors").is_file() and (tmp_path / "run" / "metrics.json").is_file()


def test_the_moving_average_warms_up_so_initial_weights_do_not_linger():
    import torch

    from soundscene.training.loop import _ema_step

    avg, current = torch.zeros(3), torch.ones(3)
    first = _ema_step(avg, current, torch.tensor(0), decay=0.999)  # decay min(0.999, 1/10): 90 % new
    torch.testing.assert_close(first, torch.full((3,), 0.9))
    late = _ema_step(avg, current, torch.tensor(100000), decay=0.999)  # the configured decay once warm
    torch.testing.assert_close(late, torch.full((3,), 0.001))


def test_a_resumed_run_scores_the_best_validation_epoch_from_before_the_interruption(tmp_path, tiny_dataset,
                                                                                     monkeypatch):
    """Issue 13: the best_val weights are kept in the resume checkpoint, so a run resumed after its best epoch
    still scores every selection rule (metrics.json's selection_rules used to lack best_val)."""
    import soundscene.training.loop as training

    # Make the first epoch the best one, whatever the later ones do.
    monkeypatch.setattr(training, "_selection_key", lambda record: (-record["epoch"],))
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 1}})
    run = tmp_path / "run"
    first = train(tiny_dataset, run_dir=run, config=cfg, test_fold=5, progress=False)
    assert set(first.test_metrics["selection_rules"]) == {"best_val", "last"}
    resumed = train(run_dir=run, resume=True, epochs=2, progress=False)
    assert resumed.best_epoch == 1 and [h["epoch"] for h in resumed.history] == [1, 2]
    saved = json.loads((run / "metrics.json").read_text())
    assert set(saved["selection_rules"]) == {"best_val", "last"}
    # The model file holds epoch 1's weights (the rule is best_val): scoring the kept weights gives its accuracy.
    assert saved["selection_rules"]["best_val"] == pytest.approx(saved["accuracy"])
    assert saved["selection_rules"]["best_val"] == pytest.approx(first.test_metrics["accuracy"])


def test_ctrl_c_in_a_real_training_process_says_how_to_resume_and_resume_continues(tmp_path, tiny_dataset):
    """SIGINT to `soundscene train` after its first epoch: exit 130, one line saying how to resume (no
    traceback), and `train --resume` then finishes the run."""
    import json
    import signal
    import subprocess
    import sys

    from helpers import TINY, wait_for

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "train": {**TINY["train"], "epochs": 200}}))
    run = tmp_path / "run"
    cli = [sys.executable, "-c", "import sys; from soundscene.cli import main; sys.exit(main(sys.argv[1:]))"]
    proc = subprocess.Popen([*cli, "train", str(tiny_dataset), "--out", str(run), "--config", str(config),
                             "--test-fold", "5", "--no-progress"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (run / "checkpoints" / "last.ckpt").is_file() or proc.poll() is not None, 300,
                 "the first finished epoch")
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "TypeError" not in err
    hint = [line for line in err.splitlines() if "--resume" in line]
    assert hint == [f"interrupted: progress up to the last finished epoch is saved; continue with: soundscene "
                    f"train --resume {run}"], err
    done = subprocess.run([*cli, "train", "--resume", str(run), "--epochs", "3", "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(json.loads((run / "history.json").read_text())) == 3
