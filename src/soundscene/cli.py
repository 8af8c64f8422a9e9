"""The ``soundscene`` command: a thin layer over the Python API.

    soundscene demo                          synthesise scenes, train, evaluate (no data needed)
    soundscene train DATA [--out RUN]        train on a data set (tau2019:PATH, urbansound8k:PATH, a folder, a CSV...)
    soundscene train --resume RUN            continue an interrupted run
    soundscene cv DATA [--out DIR]           cross-validation over the predefined (or k grouped) folds
    soundscene datasets [DATA]               list the known layouts, or check a data set before training
    soundscene evaluate RUN_OR_MODEL DATA    metrics, report and confusion matrix on labelled data
    soundscene predict MODEL FILE_OR_DIR...  labels and probabilities (table, csv or json)
    soundscene synth OUT                     write the synthetic scene data set
    soundscene config                        print the default configuration as JSON

Problems a user can fix are reported as one line starting with "error:" (exit status 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path

from ._version import __version__
from .errors import SoundsceneError
from .datasets import data_name, resolve_dataset
from .synth import DEFAULT_DIFFICULTY

DEMO_CLASSES_SECONDS = 5.0
DATA_HELP = ("a data set: NAME:PATH with NAME one of tau2019, tau2020, urbansound8k, esc50, esc10, folder, csv; "
             "or a path (a known layout is recognised; else a class-per-folder directory or a path,label CSV)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from .runtime import tune_malloc

    tune_malloc()
    warnings.showwarning = _show_warning
    try:
        return int(args.handler(args) or 0)
    except SoundsceneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from .errors import SoundsceneWarning

    if issubclass(category, SoundsceneWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soundscene", description="Acoustic scene classification.")
    p.add_argument("--version", action="version", version=f"soundscene {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="synthesise a scene data set, train the paper's CNN, evaluate it")
    demo.add_argument("--out", type=Path, help="run folder (default: runs/demo-<time>)")
    demo.add_argument("--clips-per-class", type=int, default=30)
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--difficulty", type=float, default=DEFAULT_DIFFICULTY, help="0 (easy) .. 1 (hard)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(handler=_cmd_demo)

    train = sub.add_parser("train", help="train on a data set and evaluate on its held-out part")
    train.add_argument("data", nargs="?", help=DATA_HELP)
    train.add_argument("--out", type=Path, help="run folder (default: runs/<data name>-<time>)")
    train.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in this folder")
    _add_config_options(train)
    train.add_argument("--test-fold", type=int, help="hold out this fold for the final evaluation")
    train.add_argument("--val-fold", type=int, help="choose the best epoch on this fold")
    train.add_argument("--test-fraction", type=float, help="hold out this share of groups for evaluation")
    train.add_argument("--val-fraction", type=float, help="share of training groups used for validation")
    _add_data_options(train)
    train.set_defaults(handler=_cmd_train)

    cv = sub.add_parser("cv", help="cross-validation: one run per fold, mean +- sd")
    cv.add_argument("data", help=DATA_HELP)
    cv.add_argument("--out", type=Path, help="folder for the fold runs (default: runs/cv-<data name>-<time>)")
    cv.add_argument("--folds", type=int, default=5, help="k grouped folds for data without predefined folds")
    cv.add_argument("--val-fraction", type=float, help="share of training groups used for validation")
    _add_config_options(cv)
    _add_data_options(cv)
    cv.set_defaults(handler=_cmd_cv)

    ds = sub.add_parser("datasets", help="list the known data set layouts, or check one")
    ds.add_argument("data", nargs="?", help=DATA_HELP)
    ds.add_argument("--full", action="store_true", help="decode every file (finds truncated files and NaNs)")
    ds.add_argument("--group-pattern", help="derive groups from file names (regex, or 'default')")
    ds.add_argument("--json", action="store_true", help="print the report as JSON")
    ds.set_defaults(handler=_cmd_datasets)

    ev = sub.add_parser("evaluate", help="evaluate a model on labelled data")
    ev.add_argument("model", type=Path, help="model.safetensors or a run folder")
    ev.add_argument("data", help=DATA_HELP)
    ev.add_argument("--out", type=Path, help="folder for the report (default: beside the model)")
    ev.add_argument("--fold", type=int, help="evaluate only this fold")
    _add_data_options(ev)
    ev.set_defaults(handler=_cmd_evaluate)

    pr = sub.add_parser("predict", help="classify audio files")
    pr.add_argument("model", type=Path, help="model.safetensors or a run folder")
    pr.add_argument("inputs", nargs="+", help="audio files or folders")
    pr.add_argument("--format", choices=("table", "csv", "json"), default="table")
    pr.add_argument("--batch-size", type=int, default=16)
    pr.set_defaults(handler=_cmd_predict)

    sy = sub.add_parser("synth", help="write the synthetic scene data set (WAV + labels.csv)")
    sy.add_argument("out", type=Path)
    sy.add_argument("--clips-per-class", type=int, default=30)
    sy.add_argument("--seconds", type=float, default=DEMO_CLASSES_SECONDS)
    sy.add_argument("--sample-rate", type=int, default=22050)
    sy.add_argument("--difficulty", type=float, default=DEFAULT_DIFFICULTY)
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(handler=_cmd_synth)

    cf = sub.add_parser("config", help="print the default configuration (JSON) to start a config file")
    cf.set_defaults(handler=lambda a: print(_default_config().to_json()))
    return p


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-pattern", help="derive groups from file names for data without a group column "
                                           "(a regex with a named group 'group', or 'default')")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable clips (listed) instead of stopping")
    p.add_argument("--cache-dir", type=Path, help="feature cache folder (default $SOUNDSCENE_CACHE or "
                                                  "~/.cache/soundscene)")
    p.add_argument("--no-cache", action="store_true", help="compute features in memory, write no cache")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="processes decoding audio while the cache is built")
    p.add_argument("--no-progress", action="store_true")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="JSON config file (partial is fine)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting, e.g. --set features.kind=mfcc (repeatable)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, dest="learning_rate")
    p.add_argument("--sample-rate", type=int)
    p.add_argument("--clip-seconds", type=float)
    p.add_argument("--features", choices=("logmel", "mfcc"))
    p.add_argument("--model", help="registered model name (default paper_cnn)")
    p.add_argument("--seed", type=int)


def _default_config():
    from .config import Config

    return Config()


def _config_from_args(args):
    from .config import Config, parse_override

    config = Config.load(args.config) if args.config else Config()
    overrides = dict(parse_override(s) for s in args.set)
    for key, attr in (("train.epochs", "epochs"), ("train.batch_size", "batch_size"),
                      ("train.learning_rate", "learning_rate"), ("audio.sample_rate", "sample_rate"),
                      ("audio.clip_seconds", "clip_seconds"), ("features.kind", "features"),
                      ("model.name", "model"), ("train.seed", "seed"),
                      ("train.val_fraction", "val_fraction")):
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    if args.features == "mfcc" and "features.deltas" not in overrides:
        overrides["features.deltas"] = True  # the paper's 39 features: 13 MFCCs + deltas + delta-deltas
    return config.with_overrides(overrides) if overrides else config.validate()


def _fresh_run_dir(stem: str) -> Path:
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _print_result(result) -> None:
    m = result.test_metrics
    print(f"\nrun folder: {result.run_dir}")
    print(f"  model:    {result.model_path} (best epoch {result.best_epoch})")
    print(f"  test:     accuracy {m['accuracy']:.3f}, macro class-wise accuracy "
          f"{m['macro_class_accuracy']:.3f}, log loss {m['log_loss']:.3f} on {m['n_clips']} clips")
    print(f"  pictures: {result.run_dir / 'confusion_matrix.png'}, {result.run_dir / 'training_curves.png'}")
    print(f"  report:   {result.run_dir / 'report.md'}")
    print(f"  time:     {result.seconds:.0f} s")
    if result.skipped:
        print(f"  skipped {len(result.skipped)} unreadable clip(s), listed in {result.run_dir / 'skipped.txt'}:")
        for reason in result.skipped[:10]:
            print(f"    {reason}")


def _cmd_demo(args) -> int:
    from .config import Config
    from .synth import SCENE_CLASSES, write_synthetic_dataset
    from .training import train

    if args.clips_per_class < 3:
        raise SoundsceneError("--clips-per-class must be at least 3 (training, validation and test need clips)")
    started = time.perf_counter()
    run_dir = args.out or _fresh_run_dir("demo")
    config = Config().with_overrides({"audio.clip_seconds": DEMO_CLASSES_SECONDS, "train.epochs": args.epochs,
                                      "train.seed": args.seed})
    print(f"synthesising {args.clips_per_class} clips x {len(SCENE_CLASSES)} scenes "
          f"({DEMO_CLASSES_SECONDS:g} s, difficulty {args.difficulty}) into {run_dir / 'data'}")
    manifest = write_synthetic_dataset(run_dir / "data", clips_per_class=args.clips_per_class,
                                       seconds=DEMO_CLASSES_SECONDS, sample_rate=config.audio.sample_rate,
                                       seed=args.seed, difficulty=args.difficulty, progress=not args.no_progress)
    print(f"training the paper's CNN for {args.epochs} epochs (the last fold held out for the test)")
    result = train(manifest, run_dir=run_dir, config=config, cache_dir=run_dir / "cache",
                   workers=min(2, os.cpu_count() or 1), progress=not args.no_progress)
    result.seconds = time.perf_counter() - started
    _print_result(result)
    return 0


def _cmd_train(args) -> int:
    from .training import train

    if args.resume:
        if args.data:
            raise SoundsceneError("give either DATA or --resume RUN, not both")
        result = train(run_dir=args.resume, resume=True, epochs=args.epochs, skip_bad=args.skip_bad,
                       **_cache_kwargs(args), progress=not args.no_progress)
    else:
        if not args.data:
            raise SoundsceneError("give the data to train on (a folder or CSV), or --resume RUN")
        config = _config_from_args(args)
        manifest = resolve_dataset(args.data, group_pattern=args.group_pattern)
        run_dir = args.out or _fresh_run_dir(data_name(args.data))
        print(f"training run: {run_dir}")
        result = train(manifest, run_dir=run_dir, config=config, test_fold=args.test_fold, val_fold=args.val_fold,
                       test_fraction=args.test_fraction, skip_bad=args.skip_bad, **_cache_kwargs(args),
                       progress=not args.no_progress)
    _print_result(result)
    return 0


def _cache_kwargs(args) -> dict:
    return {"cache_dir": args.cache_dir, "use_cache": not args.no_cache, "workers": max(1, args.workers)}


def _cmd_cv(args) -> int:
    from .crossval import cross_validate

    config = _config_from_args(args)
    manifest = resolve_dataset(args.data, group_pattern=args.group_pattern)
    out = args.out or _fresh_run_dir(f"cv-{data_name(args.data)}")
    print(f"cross-validation: {out}")
    result = cross_validate(manifest, out_dir=out, config=config, k=args.folds, skip_bad=args.skip_bad,
                            **_cache_kwargs(args),
                            progress=not args.no_progress)
    print(f"\n{len(result.folds)} folds in {result.seconds:.0f} s")
    for key, name in (("accuracy", "accuracy"), ("macro_class_accuracy", "macro class-wise accuracy"),
                      ("log_loss", "log loss")):
        s = result.summary[key]
        print(f"  {name:<28} {s['mean']:.3f} +- {s['sd']:.3f}   per fold: "
              + ", ".join(f"{f[key]:.3f}" for f in result.per_fold))
    print(f"report: {out / 'cv_report.md'}, mean confusion matrix: {out / 'confusion_matrix_mean.png'}")
    return 0


def _cmd_datasets(args) -> int:
    from .datasets import LAYOUTS, check_dataset, format_check

    if not args.data:
        print("known data set layouts (use as NAME:PATH; a plain path is recognised by its files):")
        for name, text in LAYOUTS.items():
            print(f"  {name:<13} {text}")
        return 0
    manifest = resolve_dataset(args.data, check_files=False, group_pattern=args.group_pattern)
    report = check_dataset(manifest, full=args.full, progress=sys.stderr.isatty())
    print(json.dumps(report, indent=2) if args.json else format_check(report))
    return 1 if report["unreadable"] else 0


def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate

    manifest = resolve_dataset(args.data, group_pattern=args.group_pattern)
    m = evaluate(args.model, manifest, out_dir=args.out, fold=args.fold, skip_bad=args.skip_bad,
                 **_cache_kwargs(args), progress=not args.no_progress)
    print(f"accuracy {m['accuracy']:.3f}, macro class-wise accuracy {m['macro_class_accuracy']:.3f}, "
          f"log loss {m['log_loss']:.3f} on {m['n_clips']} clips")
    for name, acc in m["per_class_accuracy"].items():
        print(f"  {name:<24} {'-' if acc is None else f'{acc:.3f}'}")
    if m["skipped"]:
        print(f"skipped {len(m['skipped'])} unreadable clip(s):")
        for s in m["skipped"]:
            print(f"  {s['reason']}")
    print(f"report: {Path(m['out_dir']) / 'report.md'}")
    return 0


def _cmd_predict(args) -> int:
    from .inference import SceneClassifier, expand_inputs

    model = args.model / "model.safetensors" if args.model.is_dir() else args.model
    classifier = SceneClassifier.from_file(model)
    files = expand_inputs(args.inputs)
    predictions = classifier.predict_files(files, batch_size=args.batch_size, skip_bad=True,
                                           progress=len(files) > 20 and sys.stderr.isatty())
    if args.format == "json":
        print(json.dumps([p.__dict__ for p in predictions], indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "label", "confidence", *classifier.classes, "error"])
        for p in predictions:
            probs = [f"{p.probabilities[c]:.6f}" for c in classifier.classes] if p.probabilities else [""] * len(
                classifier.classes)
            writer.writerow([p.path, p.label or "", f"{p.confidence:.6f}" if p.confidence is not None else "",
                             *probs, p.error or ""])
    else:
        width = max(len(p.path) for p in predictions)
        for p in predictions:
            if p.error:
                print(f"{p.path:<{width}}  error: {p.error}")
            else:
                print(f"{p.path:<{width}}  {p.label:<20} {p.confidence:6.1%}")
    return 1 if all(p.error for p in predictions) else 0


def _cmd_synth(args) -> int:
    from .synth import write_synthetic_dataset

    manifest = write_synthetic_dataset(args.out, clips_per_class=args.clips_per_class, seconds=args.seconds,
                                       sample_rate=args.sample_rate, seed=args.seed, difficulty=args.difficulty)
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
