"""The ``soundscene`` command: a thin layer over the Python API.

    soundscene demo                          synthesise scenes, train, evaluate (no data needed)
    soundscene train DATA [--out RUN]        train on a data set (tau2019:PATH, urbansound8k:PATH, a folder, a CSV...)
    soundscene train --resume RUN            continue an interrupted run
    soundscene cv DATA [--out DIR]           cross-validation over the predefined (or k grouped) folds
    soundscene datasets [DATA]               list the known layouts, or check a data set before training
    soundscene evaluate RUN_OR_MODEL DATA    metrics, report and confusion matrix on labelled data
    soundscene predict MODEL FILE_OR_DIR...  labels, probabilities and timelines (table, csv or json)
    soundscene batch MODEL INPUT... --out DIR  an archive in resumable shards (local processes or Ray), Parquet out
    soundscene listen MODEL [--stdin]        live decisions from the microphone or raw PCM (JSON lines, MQTT)
    soundscene serve MODEL                   HTTP API and web page on 127.0.0.1:8000
    soundscene export MODEL -o model.onnx    ONNX graph from waveform to probabilities, verified
    soundscene eq MODEL MUSIC --ambient REC  equalize music for the scene around the listener (eq-live: live)
    soundscene synth OUT                     write the synthetic scene data set
    soundscene schema [KIND]                 the JSON Schema of the records every output uses
    soundscene config                        print the default configuration as JSON

Exit status: 0 when everything asked for was done; 1 when some inputs failed (each is named on
stderr in a line starting with "error:", and every good result is still printed or written);
2 for a usage or fatal error (one line starting with "error:"); 130 when interrupted; 141 when the reader of the output went away (| head).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from ._version import __version__
from .errors import SoundsceneError

DEMO_CLASSES_SECONDS = 5.0
DATA_HELP = ("a data set: NAME:PATH with NAME one of tau2019, tau2020, urbansound8k, esc50, esc10, folder, csv; "
             "or a path (a known layout is recognised; else a class-per-folder directory or a path,label CSV)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what the command line gave (a --config fills the rest)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from .core.records import show_warning
    from .runtime import tune_malloc

    tune_malloc()
    warnings.showwarning = show_warning
    if threading.current_thread() is threading.main_thread():  # systemd's stop: the clean end of Ctrl-C
        signal.signal(signal.SIGTERM, _terminated)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is a BrokenPipeError we can answer
        return code
    except SoundsceneError as exc:
        _error_line(exc)
        return 2
    except ModuleNotFoundError as exc:  # an extra that this install left out (a sensor has no torch)
        _error_line(_missing_package(args.command, exc.name))
        return 2
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted: {exc}" if str(exc) else "\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _error_line(f"{where}{exc.strerror or exc}")
        return 2


EXTRAS = {"torch": "train", "lightning": "train", "sklearn": "train", "librosa": "train", "matplotlib": "train",
          "safetensors": "train", "onnx": "export", "onnxruntime": "sensor", "paho": "sensor",
          "fastapi": "serve", "uvicorn": "serve", "sqlalchemy": "hub", "alembic": "hub", "pyarrow": "batch",
          "ray": "ray"}


def _terminated(_signum, _frame):
    raise KeyboardInterrupt


def _missing_package(command: str, name: str | None) -> str:
    """One line for a command whose package is not installed: which extra brings it."""
    top = (name or "?").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"`soundscene {command}` needs the package {top}, which is not installed"
    return f"`soundscene {command}` needs {top}, which this install left out: pip install 'soundscene[{extra}]'"


def _error_line(message) -> None:
    """One ``error:`` line on stderr; names in it are escaped (they cannot split or forge a line)."""
    from .core.records import printable

    print(f"error: {printable(message)}", file=sys.stderr)


def _shown(path) -> str:
    """A path as printed: escaped (see core.records.printable)."""
    from .core.records import printable

    return printable(path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soundscene", description="Acoustic scene classification.")
    p.add_argument("--version", action="version", version=f"soundscene {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    _add_training_commands(sub)
    _add_model_commands(sub)
    _add_application_commands(sub)
    _add_calibrate_command(sub)
    return p


def _add_training_commands(sub) -> None:
    """demo, train, cv, datasets, evaluate, synth."""
    demo = sub.add_parser("demo", help="synthesise a scene data set, train the paper's CNN, evaluate it")
    demo.add_argument("--out", type=Path, help="run folder (default: runs/demo-<time>)")
    demo.add_argument("--clips-per-class", type=int, default=30)
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--difficulty", type=float, help="0 (easy) .. 1 (hard); default: the synthetic set's (0.8)")
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
    cv.add_argument("--restart", action="store_true",
                    help="--out holds folds of another configuration or data: delete them and start again")
    _add_config_options(cv)
    _add_data_options(cv)
    cv.set_defaults(handler=_cmd_cv)

    ds = sub.add_parser("datasets", help="list the known data set layouts, or check one")
    ds.add_argument("data", nargs="?", help=DATA_HELP)
    ds.add_argument("--full", action="store_true", help="decode every file (finds truncated files and NaNs)")
    ds.add_argument("--group-pattern", help="derive groups from file names (regex, or 'default')")
    ds.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_config_options(ds)
    ds.set_defaults(handler=_cmd_datasets)

    ev = sub.add_parser("evaluate", help="evaluate a model on labelled data")
    ev.add_argument("model", type=Path, help="model.safetensors or a run folder")
    ev.add_argument("data", help=DATA_HELP)
    ev.add_argument("--out", type=Path, help="folder for the report (default: beside the model)")
    ev.add_argument("--fold", type=int, help="evaluate only this fold")
    ev.add_argument("--official-test", action="store_true",
                    help="only the data set's official evaluation list (TAU: evaluation_setup/fold1_evaluate.csv)")
    ev.add_argument("--max-seconds", type=float, help="accept files up to this long (default: the model's limit)")
    ev.add_argument("--include-training", action="store_true",
                    help="also score clips the model was trained or validated on (the report marks it inflated)")
    _add_data_options(ev)
    ev.set_defaults(handler=_cmd_evaluate)

    sy = sub.add_parser("synth", help="write the synthetic scene data set (WAV + labels.csv)")
    sy.add_argument("out", type=Path)
    sy.add_argument("--clips-per-class", type=int, default=30)
    sy.add_argument("--seconds", type=float, default=DEMO_CLASSES_SECONDS)
    sy.add_argument("--sample-rate", type=int, default=22050)
    sy.add_argument("--difficulty", type=float, help="0 (easy) .. 1 (hard); default: the synthetic set's (0.8)")
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(handler=_cmd_synth)


def _add_model_commands(sub) -> None:
    """predict, config, schema, profile: what a model file or the configuration says."""
    pr = sub.add_parser("predict", help="classify audio files")
    pr.add_argument("model", type=Path, help="model.safetensors or a run folder")
    pr.add_argument("inputs", nargs="+", help="audio files or folders")
    pr.add_argument("--format", choices=("table", "csv", "json", "jsonl"), default="table",
                    help="table (default), csv, json (an array) or jsonl (a line per file); each file's result is "
                         "written as soon as it is done")
    _add_window_options(pr)
    _add_level_options(pr, switch=True)
    pr.add_argument("--plot", type=Path, metavar="DIR", help="write each file's scene timeline as a PNG into DIR")
    pr.set_defaults(handler=_cmd_predict)

    cf = sub.add_parser("config", help="print the default configuration (JSON) to start a config file")
    cf.add_argument("--preset", choices=("paper", "strong", "tiny"), help="print this preset instead")
    cf.set_defaults(handler=lambda a: print((_preset(a.preset)).to_json()))

    sc = sub.add_parser("schema", help="print the JSON Schema of soundscene's records (every output uses them)")
    sc.add_argument("kind", nargs="?", help="one record kind: window, segment, prediction, error, decision, "
                                             "sensor_message, levels, levels_message, day_levels or health (default: all)")
    sc.set_defaults(handler=_cmd_schema)

    pf = sub.add_parser("profile", help="parameters, memory, multiply-accumulates per second of audio, latency")
    pf.add_argument("model", nargs="?", type=Path, help="model.safetensors or a run folder")
    pf.add_argument("--preset", choices=("paper", "strong", "tiny"), help="profile a preset's network instead")
    pf.add_argument("--classes", type=int, default=10, help="classes, with --preset (default 10)")
    pf.add_argument("--json", action="store_true", help="one JSON object")
    pf.add_argument("--dcase", action="store_true",
                    help="exit 1 with the reason when the DCASE limits (128 K parameters, 30 M MACs/s) are exceeded")
    pf.set_defaults(handler=_cmd_profile)

def _add_sensor_options(li) -> None:
    """The options of listen, which are those of a sensor (and of sensor-check, which checks one)."""
    from .apps.broker import add_broker_arguments

    li.add_argument("model", type=Path, nargs="?",
                    help="model.onnx (an export: needs no torch), model.safetensors or a run folder")
    li.add_argument("--config", type=Path, metavar="TOML",
                    help="a sensor.toml holding any of these options (level_interval = 30); the command line wins")
    li.add_argument("--stdin", action="store_true", help="read raw interleaved PCM from stdin instead of a microphone")
    li.add_argument("--rate", type=int, default=48000, help="input sample rate in Hz (default 48000)")
    li.add_argument("--channels", type=int, default=1, help="input channels (default 1)")
    li.add_argument("--sample-format", default="s16le", choices=("s16le", "s24le", "s32le", "f32le"))
    li.add_argument("--device", help="input device name or number (microphone)")
    _add_window_options(li)
    _add_level_options(li, switch=True)
    li.add_argument("--level-interval", type=float, default=60.0, metavar="SECONDS",
                    help="with --mqtt, publish the levels over each interval this long on soundscene/<id>/levels "
                         "(default 60)")
    li.add_argument("--smoothing", type=float, default=0.5,
                    help="weight of the newest window in the moving average (1 = none; default 0.5)")
    li.add_argument("--dwell", type=float, metavar="SECONDS",
                    help="a new scene must lead this long before it is reported (default: one window)")
    add_broker_arguments(li, help="also publish decisions to this MQTT broker")
    li.add_argument("--sensor-id", help="this sensor's id in the MQTT topics soundscene/<id>/...")
    li.add_argument("--spool", type=Path, metavar="DIR",
                    help="with --mqtt, keep every message on disk here until the broker has it (survives power cuts)")
    li.add_argument("--spool-max-mb", type=float, default=100.0, metavar="MB",
                    help="the spool's size; past it the oldest messages are dropped and counted (default 100)")
    li.add_argument("--health-interval", type=float, default=60.0, metavar="SECONDS",
                    help="with --mqtt, publish a health record this often on soundscene/<id>/health (default 60)")
    li.add_argument("--quiet", action="store_true", help="do not print the JSON lines")


def _add_application_commands(sub) -> None:
    """listen, serve, export, eq, eq-live: the applications over a model."""
    li = sub.add_parser("listen", help="classify live audio (microphone or raw PCM on stdin), a JSON line per hop")
    _add_sensor_options(li)
    li.set_defaults(handler=_cmd_listen)
    ch = sub.add_parser("sensor-check", help="check a sensor's model, input, spool and broker login, a line each")
    _add_sensor_options(ch)
    ch.add_argument("--seconds", type=float, default=2.0, help="seconds of input to read and measure (default 2)")
    ch.set_defaults(handler=_cmd_sensor_check)

    se = sub.add_parser("serve", help="HTTP API (POST /v1/classify) and a web page, on 127.0.0.1 by default")
    se.add_argument("model", type=Path, help="model.safetensors or a run folder")
    se.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    se.add_argument("--port", type=int, default=8000)
    se.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload in MB (default 50)")
    _add_level_options(se, switch=True)
    se.set_defaults(handler=_cmd_serve)

    ex = sub.add_parser("export", help="write the model as an ONNX graph (waveform -> probabilities), verified")
    ex.add_argument("model", type=Path, help="model.safetensors or a run folder")
    ex.add_argument("-o", "--out", type=Path, required=True, help="the .onnx file to write")
    ex.add_argument("--verify", nargs="*", default=[], metavar="FILE_OR_FOLDER",
                    help="recordings to verify the graph on against the torch model (default: synthetic clips)")
    ex.add_argument("--quantize", action="store_true", help="also write a dynamic int8 model (NAME.int8.onnx)")
    ex.add_argument("--opset", type=int, default=17)
    ex.set_defaults(handler=_cmd_export)

    eq = sub.add_parser("eq", help="equalize music for the acoustic scene of an ambient recording")
    eq.add_argument("inputs", nargs="*", metavar="MODEL MUSIC",
                    help="the model and the music (with --scene, the music alone is enough)")
    eq.add_argument("--ambient", type=Path, help="a recording of the listener's surroundings (any length)")
    eq.add_argument("-o", "--out", type=Path, help="the equalized music (same length, rate, channels, encoding)")
    eq.add_argument("--scene", help="force this scene's preset instead of classifying the ambient recording")
    eq.add_argument("--presets", type=Path, help="a TOML or JSON file of scene presets (overrides the defaults)")
    eq.add_argument("--blend", action="store_true", help="blend presets by the windows' probabilities")
    eq.add_argument("--crossfade", type=float, default=1.0, metavar="SECONDS",
                    help="crossfade between presets where the scene changes (default 1 s)")
    eq.add_argument("--plot", type=Path, metavar="PNG",
                    help="draw the run over time: scene, ambient level, gain applied, exposure")
    eq.add_argument("--plot-curves", type=Path, metavar="PNG", help="draw the applied preset curve(s)")
    eq.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    _add_eq_options(eq)
    eq.add_argument("--record-dose", action="store_true",
                    help="count this file's dose as listened to (rendering a file is not listening)")
    eq.set_defaults(handler=_cmd_eq)

    el = sub.add_parser("eq-live", help="equalize music live from the scene heard by a microphone or on stdin")
    el.add_argument("model", type=Path, help="model.safetensors or a run folder")
    el.add_argument("music", type=Path)
    el.add_argument("-o", "--out", type=Path, help="write the equalized music here (default: play it)")
    el.add_argument("--ambient-stdin", action="store_true", help="ambient audio as raw PCM on stdin")
    el.add_argument("--rate", type=int, default=48000, help="ambient sample rate in Hz")
    el.add_argument("--channels", type=int, default=1, help="ambient channels")
    el.add_argument("--sample-format", default="s16le", choices=("s16le", "s24le", "s32le", "f32le"))
    el.add_argument("--presets", type=Path, help="a TOML or JSON file of scene presets")
    el.add_argument("--crossfade", type=float, default=1.0, metavar="SECONDS")
    el.add_argument("--dwell", type=float, metavar="SECONDS", help="scene-change hysteresis (default one window)")
    el.add_argument("--plot", type=Path, metavar="PNG",
                    help="at the end, draw the run over time: scene, ambient level, gain applied, exposure")
    _add_eq_options(el)
    el.set_defaults(handler=_cmd_eq_live)
    _add_hub_command(sub)
    _add_batch_command(sub)



def _add_batch_command(sub) -> None:
    """batch: sharded, resumable inference over archives (local processes or Ray), Parquet out."""
    ba = sub.add_parser("batch", help="classify an archive in shards on local processes or Ray; a resumable "
                                      "Parquet data set (windows, segments, files, errors) in --out")
    ba.add_argument("model", type=Path, help="model.safetensors or a run folder")
    ba.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="audio files, folders, globs, or a manifest CSV (path[,sensor_id][,start_time])")
    ba.add_argument("--out", type=Path, required=True, metavar="DIR", help="the output folder (rerun to resume)")
    ba.add_argument("--engine", default="local", choices=("local", "ray"), help="local processes (default) or Ray")
    ba.add_argument("--ray-address", metavar="auto|ray://HOST:PORT",
                    help="the Ray cluster to join (default: a local Ray instance)")
    ba.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes or Ray actors, one core each (default: this machine's cores)")
    ba.add_argument("--shard-minutes", type=float, default=10.0, help="minutes of audio per shard (default 10)")
    _add_window_options(ba)
    _add_level_options(ba, switch=True)
    ba.add_argument("--no-progress", action="store_true")
    ba.set_defaults(handler=_cmd_batch)


def _cmd_batch(args) -> int:
    try:
        from .apps.batch import Progress, run_batch
    except ImportError as exc:
        raise SoundsceneError(f"batch needs pyarrow ({exc.name} is missing): pip install 'soundscene[batch]'") \
            from None
    from .runtime import tune_malloc

    if any(str(item) == "" for item in args.inputs):
        raise SoundsceneError('an input path is empty (""): name the files, folders or manifests to classify')
    progress = Progress(enabled=not args.no_progress)
    try:
        result = run_batch(args.model, args.inputs, args.out, engine=args.engine, workers=args.workers,
                           ray_address=args.ray_address, shard_minutes=args.shard_minutes,
                           window_seconds=args.window, hop_seconds=args.hop, silence_dbfs=args.silence_dbfs,
                           calibration_db=args.calibration_db, levels=not args.no_levels, progress=progress,
                           report=lambda line: print(line, file=sys.stderr), setup=tune_malloc)
    except KeyboardInterrupt:
        print("\nthe shards done are kept: rerun the same command to resume", file=sys.stderr)
        raise
    for name, reason in result.errors:
        _error_line(reason if name in reason else f"{name}: {reason}")
    s = result.summary
    print(f"{s['files'] - result.failed} of {s['files']} file(s) classified, {s['audio_hours']:.2f} h of audio; "
          f"{result.shards_run} shard(s) run, {result.shards_skipped} already done; output: {_shown(args.out)}")
    if result.failed:
        print(f"{result.failed} of {s['files']} file(s) failed (see {_shown(args.out / 'errors')})", file=sys.stderr)
    return 1 if result.failed else 0


def _add_hub_command(sub) -> None:
    """hub: store a fleet's MQTT messages, serve the API and page; hub simulate: a fleet of simulated sensors."""
    hu = sub.add_parser("hub", help="store what a fleet of sensors publishes over MQTT; API and web page "
                                    "(127.0.0.1:8100 by default)")
    from .apps.broker import add_broker_arguments

    add_broker_arguments(hu, help="the MQTT broker the sensors publish to (required)")
    hu.add_argument("--db", help="database: a SQLite file (default hub.db) or postgresql+psycopg://USER@HOST/NAME")
    hu.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    hu.add_argument("--port", type=int, default=8100)
    hu.add_argument("--token-file", help="a file holding the bearer token that writes need (required off loopback, "
                                         "unless --no-auth)")
    hu.add_argument("--no-auth", action="store_true", help="serve another address without a token (trusted network)")
    hu.add_argument("--rules", help="a TOML file of alert rules")
    hu.add_argument("--site-plan", metavar="IMAGE", help="a PNG/JPEG/SVG plan on which sensors with x/y are drawn")
    hu.add_argument("--client-id", default="soundscene-hub", help="the MQTT client id (fixed: the broker keeps "
                                                                   "this hub's session; one per hub)")
    hu.add_argument("--share", metavar="GROUP", help="share the subscription with other hubs ($share/GROUP/...)")
    hu.add_argument("--keep-days", type=float, default=30.0, help="keep raw decisions this many days (default 30; "
                                                                  "segments are kept)")
    hs = hu.add_subparsers(dest="hub_command", metavar="{simulate,import}")
    im = hs.add_parser("import", help="load a soundscene batch result into the hub's database (once, however "
                                      "often it is run)")
    im.add_argument("folder", type=Path, metavar="DIR", help="the --out folder of soundscene batch")
    im.add_argument("--db", dest="import_db", help="the hub's database (default hub.db)")
    si = hs.add_parser("simulate", help="publish as N simulated sensors, from real scene probabilities")
    add_broker_arguments(si, required=True, dest="sim_mqtt", help="the MQTT broker to publish to")
    si.add_argument("--sensors", type=int, default=3, help="how many sensors (default 3)")
    si.add_argument("--hop", type=float, default=1.0, metavar="SECONDS", help="one decision per sensor this often")
    si.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")
    si.add_argument("--model", type=Path, help="a model file or run folder: the sensors replay its probabilities "
                                               "on --audio (default: a synthetic scene walk)")
    si.add_argument("--audio", nargs="+", default=[], metavar="FILE_OR_FOLDER",
                    help="with --model, the recordings classified once and replayed by the sensors")
    si.add_argument("--prefix", default="sim", help="sensor ids PREFIX-1 ... PREFIX-N (default sim)")
    si.add_argument("--level-interval", type=float, default=10.0, metavar="SECONDS",
                    help="publish levels messages this often (0: none; default 10)")
    si.add_argument("--seed", type=int, default=0)
    hu.set_defaults(handler=_cmd_hub)


def _cmd_hub(args) -> int:
    if args.hub_command == "import":
        from .apps.hub.db import open_database
        from .apps.hub.importer import import_batch

        done = import_batch(open_database(args.import_db), args.folder)
        left = [f"{n} windows without a start time" for n in [done.untimed] if n]
        left += [f"{n} windows of sensor ids that cannot be one" for n in [done.refused_sensors] if n]
        print(f"imported {done.stored} windows ({done.duplicates} already there)"
              + (f"; left out: {', '.join(left)}" if left else ""))
        return 0
    from .apps.broker import settings_from_args

    if args.hub_command == "simulate":
        from .apps.hub.simulate import simulate

        simulate(mqtt=settings_from_args(args, "sim_mqtt"), sensors=args.sensors, hop=args.hop, seconds=args.seconds,
                 model=args.model, audio=args.audio, prefix=args.prefix, level_interval=args.level_interval,
                 seed=args.seed)
        return 0
    broker = settings_from_args(args)
    if broker is None:
        raise SoundsceneError("hub needs --mqtt URL: the broker the sensors publish to (e.g. mqtts://broker:8883)")
    from .apps.hub.alerts import RulesError
    from .apps.hub.service import run_hub

    try:
        run_hub(mqtt=broker, db=args.db, host=args.host, port=args.port, token_file=args.token_file,
                no_auth=args.no_auth, rules=args.rules, site_plan=args.site_plan, client_id=args.client_id,
                share=args.share, keep_days=args.keep_days)
    except RulesError as exc:
        for mistake in exc.mistakes:
            _error_line(mistake)
        return 2
    return 0


def _add_level_options(p: argparse.ArgumentParser, *, switch: bool = False) -> None:
    p.add_argument("--calibration-db", type=float, metavar="DB",
                   help="the dB SPL that a full-scale RMS produces at the microphone (from soundscene calibrate): "
                        "levels in dB SPL; without it levels are dB re full scale, marked uncalibrated")
    if switch:
        p.add_argument("--no-levels", action="store_true",
                       help="no sound levels (LAeq, percentiles, bands): about a fifth less time per window")


def _add_eq_options(p: argparse.ArgumentParser) -> None:
    """eq and eq-live: level following, loudness compensation, exposure, per-scene preferences."""
    _add_level_options(p)
    g = p.add_argument_group("level following (the music stays above the surroundings)")
    g.add_argument("--follow-level", action="store_true", help="raise the music with the ambient LAeq")
    g.add_argument("--margin-db", type=float, default=10.0, metavar="DB",
                   help="music above the ambient (calibrated; default 10)")
    g.add_argument("--max-boost-db", type=float, default=12.0, metavar="DB", help="largest boost (default 12 dB)")
    g.add_argument("--max-level-db", type=float, metavar="DB",
                   help="highest music level (dB SPL with calibration, else dBFS)")
    g.add_argument("--attack", type=float, default=8.0, metavar="SECONDS",
                   help="time to follow a louder surrounding (default 8 s; bursts under 3 s are ignored)")
    g.add_argument("--release", type=float, default=16.0, metavar="SECONDS",
                   help="time to follow a quieter surrounding (default 16 s)")
    g.add_argument("--dead-band-db", type=float, default=3.0, metavar="DB",
                   help="ambient changes ignored below this (default 3)")
    g = p.add_argument_group("loudness, exposure and preferences")
    g.add_argument("--loudness", action="store_true",
                   help="loudness compensation (ISO 226:2023) below the reference level")
    g.add_argument("--loudness-reference", type=float, default=80.0, metavar="PHON",
                   help="level the music is meant for (default 80 phon; uncalibrated, 0 dB volume is taken as it)")
    g.add_argument("--headphone-db-spl-at-fs", type=float, metavar="DB",
                   help="dB SPL (A) at the ear of a full-scale 1-kHz sine: enables the exposure dose")
    g.add_argument("--exposure-mode", choices=("adult", "sensitive"), default="adult",
                   help="ITU-T H.870 allowance: 80 dB(A) (adult) or 75 dB(A) (sensitive) for 40 h a week")
    g.add_argument("--limiter", action="store_true", help="keep the level within what the weekly allowance permits")
    g.add_argument("--limiter-hours", type=float, default=2.0, metavar="HOURS",
                   help="listening the remaining allowance is spread over (default 2 h)")
    g.add_argument("--volume-db", type=float, default=0.0, metavar="DB",
                   help="volume; with --scene, remembered for that scene")
    g.add_argument("--adjust", action="append", metavar="BAND=DB",
                   help="band adjustment, e.g. 62.5=+2 (repeatable); with --scene, remembered for that scene")
    g.add_argument("--reset-preferences", action="store_true", help="forget the per-scene preferences")
    g.add_argument("--state", type=Path, metavar="JSON",
                   help="the dose and preferences file (default ~/.local/state/soundscene/eq.json)")


def _eq_session(args, *, record_dose: bool):
    from .apps.eq.session import Session, default_state_path

    if args.adjust and not getattr(args, "scene", None):
        raise SoundsceneError("--adjust needs --scene NAME: band adjustments are remembered for a scene")
    return Session(state_path=args.state or default_state_path(), follow_level=args.follow_level,
                   margin_db=args.margin_db, max_boost_db=args.max_boost_db, max_level_db=args.max_level_db,
                   attack=args.attack, release=args.release, dead_band_db=args.dead_band_db, loudness=args.loudness,
                   loudness_reference=args.loudness_reference, headphone_db_spl_at_fs=args.headphone_db_spl_at_fs,
                   exposure_mode=args.exposure_mode, limiter=args.limiter, limiter_hours=args.limiter_hours,
                   volume_db=args.volume_db, adjust=args.adjust, reset_preferences=args.reset_preferences,
                   record_dose=record_dose)


def _add_calibrate_command(sub) -> None:
    ca = sub.add_parser("calibrate", help="the --calibration-db of a microphone, from a recording of an acoustic "
                                          "calibrator")
    ca.add_argument("recording", type=Path, help="the calibrator's tone as recorded by the sensor (a few seconds)")
    ca.add_argument("--reference-db", type=float, default=94.0, help="the calibrator's level in dB SPL (default 94)")
    ca.add_argument("--frequency", type=float, default=1000.0, help="the calibrator's frequency in Hz (default 1000)")
    ca.set_defaults(handler=_cmd_calibrate)


def _add_window_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="analysis window (default: the model's training clip length)")
    p.add_argument("--hop", type=float, metavar="SECONDS", help="hop between windows (default: half the window)")
    p.add_argument("--silence-dbfs", type=float, metavar="DB",
                   help="a window quieter than this (RMS around its mean, dB full scale) is silent: no scene is "
                        "reported for it (default -80)")


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
    p.add_argument("--preset", choices=("paper", "strong", "tiny"),
                   help="start from a named configuration: paper (default), strong (best accuracy), "
                        "tiny (within the DCASE low-complexity budget)")
    p.add_argument("--accelerator", help="cpu, gpu, auto... (train.accelerator)")
    p.add_argument("--devices", type=int, help="devices per node; > 1 trains with DDP (train.devices)")
    p.add_argument("--num-nodes", type=int, help="machines in a multi-node DDP run (train.num_nodes)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp (train.strategy)")


def _preset(name):
    from .config import Config

    return Config.preset(name) if name else Config()


def _cmd_profile(args) -> int:
    from .training.complexity import format_profile, profile_model_file, profile_network

    if (args.model is None) == (args.preset is None):
        raise SoundsceneError("give a model file or run folder, or --preset NAME")
    if args.preset:
        config = _preset(args.preset)
        if config.audio.clip_seconds is None:
            config = config.with_overrides({"audio.clip_seconds": 10.0})
        report = profile_network(config, args.classes)
    else:
        report = profile_model_file(args.model)
    print(json.dumps(report, indent=2, allow_nan=False) if args.json else format_profile(report))
    if args.dcase and not report["dcase"]["ok"]:
        print(f"error: over the DCASE budget: {report['dcase']['reason']}", file=sys.stderr)
        return 1
    return 0


def _config_from_args(args):
    """preset (or the defaults) <- --config file <- --set <- the shortcut options, validated once."""
    import json

    from .config import Config, parse_override
    from .errors import ConfigError

    config = Config.preset(args.preset) if getattr(args, "preset", None) else Config()
    overrides = {}
    if getattr(args, "config", None):
        Config.load(args.config)  # refuses a bad file in one line, naming the key
        overrides.update(_dotted(json.loads(args.config.read_text(encoding="utf-8"))))
        overrides.pop("format", None)
        if any(not isinstance(k, str) for k in overrides):
            raise ConfigError(f"{args.config}: not a configuration")
    overrides.update(dict(parse_override(s) for s in args.set))
    for key, attr in (("train.epochs", "epochs"), ("train.batch_size", "batch_size"),
                      ("train.learning_rate", "learning_rate"), ("audio.sample_rate", "sample_rate"),
                      ("audio.clip_seconds", "clip_seconds"), ("features.kind", "features"),
                      ("model.name", "model"), ("train.seed", "seed"),
                      ("train.val_fraction", "val_fraction"), ("train.accelerator", "accelerator"),
                      ("train.devices", "devices"), ("train.num_nodes", "num_nodes"),
                      ("train.strategy", "strategy")):
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    config = config.with_overrides(overrides) if overrides else config.validate()
    from .core.models import check_model_config

    check_model_config(config)
    return config


def _dotted(data: dict, prefix: str = "") -> dict:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; model.params stays one value."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "model.params":
            out.update(_dotted(value, f"{name}."))
        else:
            out[name] = value
    return out


def _fresh_run_dir(stem: str) -> Path:
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _print_result(result) -> None:
    from .training.runs import RunFolder

    m = result.test_metrics
    print(f"\nrun folder: {result.run_dir}")
    rule = {"best_val": "best validation epoch", "ema": "averaged weights", "last": "last epoch"}.get(
        m.get("selection", "best_val"), m.get("selection"))
    print(f"  model:    {result.model_path} ({rule}, epoch {result.best_epoch})")
    print(f"  test:     accuracy {m['accuracy']:.3f}, macro class-wise accuracy "
          f"{m['macro_class_accuracy']:.3f}, log loss {m['log_loss']:.3f} on {m['n_clips']} clips")
    run = RunFolder(result.run_dir)
    print(f"  pictures: {run.confusion_matrix}, {run.training_curves}")
    print(f"  report:   {run.report}")
    print(f"  time:     {result.seconds:.0f} s")
    if result.skipped:
        print(f"  skipped {len(result.skipped)} unreadable clip(s), listed in {run.skipped}:")
        from .core.records import printable

        for reason in result.skipped[:10]:
            print(f"    {printable(reason)}")


def _cmd_demo(args) -> int:
    from .config import Config
    from .training.synth import DEFAULT_DIFFICULTY, SCENE_CLASSES, write_synthetic_dataset
    from .training.loop import train

    if args.clips_per_class < 3:
        raise SoundsceneError("--clips-per-class must be at least 3 (training, validation and test need clips)")
    started = time.perf_counter()
    difficulty = DEFAULT_DIFFICULTY if args.difficulty is None else args.difficulty
    run_dir = args.out or _fresh_run_dir("demo")
    config = Config().with_overrides({"audio.clip_seconds": DEMO_CLASSES_SECONDS, "train.epochs": args.epochs,
                                      "train.seed": args.seed})
    print(f"synthesising {args.clips_per_class} clips x {len(SCENE_CLASSES)} scenes "
          f"({DEMO_CLASSES_SECONDS:g} s, difficulty {difficulty}) into {run_dir / 'data'}")
    manifest = write_synthetic_dataset(run_dir / "data", clips_per_class=args.clips_per_class,
                                       seconds=DEMO_CLASSES_SECONDS, sample_rate=config.audio.sample_rate,
                                       seed=args.seed, difficulty=difficulty, progress=not args.no_progress)
    print(f"training the paper's CNN for {args.epochs} epochs (the last fold held out for the test)")
    result = train(manifest, run_dir=run_dir, config=config, cache_dir=run_dir / "cache",
                   workers=min(2, os.cpu_count() or 1), progress=not args.no_progress)
    result.seconds = time.perf_counter() - started
    _print_result(result)
    return 0


def _cmd_train(args) -> int:
    from .training.datasets import data_name, resolve_dataset
    from .training.loop import train

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
    from .training.crossval import cross_validate
    from .training.datasets import data_name, resolve_dataset

    config = _config_from_args(args)
    manifest = resolve_dataset(args.data, group_pattern=args.group_pattern)
    out = args.out or _fresh_run_dir(f"cv-{data_name(args.data)}")
    print(f"cross-validation: {out}")
    result = cross_validate(manifest, out_dir=out, config=config, k=args.folds, skip_bad=args.skip_bad,
                            restart=args.restart, **_cache_kwargs(args),
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
    from .training.datasets import LAYOUTS, check_dataset, format_check, resolve_dataset

    if not args.data:
        print("known data set layouts (use as NAME:PATH; a plain path is recognised by its files):")
        for name, text in LAYOUTS.items():
            print(f"  {name:<13} {text}")
        return 0
    manifest = resolve_dataset(args.data, check_files=False, group_pattern=args.group_pattern)
    report = check_dataset(manifest, full=args.full, audio=_config_from_args(args).audio,
                           progress=sys.stderr.isatty())
    print(json.dumps(report, indent=2) if args.json else format_check(report))
    for line in report["errors"]:
        _error_line(line)
    return 1 if report["unreadable"] else 0


def _cmd_evaluate(args) -> int:
    from .training.datasets import resolve_dataset
    from .training.evaluation import evaluate

    manifest = resolve_dataset(args.data, group_pattern=args.group_pattern, check_files=not args.skip_bad)
    m = evaluate(args.model, manifest, out_dir=args.out, fold=args.fold, official_test=args.official_test,
                 include_training=args.include_training, max_seconds=args.max_seconds, skip_bad=args.skip_bad,
                 **_cache_kwargs(args),
                 progress=not args.no_progress)
    print(f"accuracy {m['accuracy']:.3f}, macro class-wise accuracy {m['macro_class_accuracy']:.3f}, "
          f"log loss {m['log_loss']:.3f} on {m['n_clips']} clips")
    for name, acc in m["per_class_accuracy"].items():
        print(f"  {name:<24} {'-' if acc is None else f'{acc:.3f}'}")
    if m["left_out"]:
        print(f"left out {m['left_out']} clip(s) the model was trained or validated on "
              "(--include-training scores them too)")
    if m["training_clips_scored"]:
        print(f"warning: {m['training_clips_scored']} clip(s) scored were used to train or validate the model; "
              "these figures are inflated", file=sys.stderr)
    for s in m["skipped"]:
        _error_line(s["reason"])
    if m["skipped"]:
        print(f"skipped {len(m['skipped'])} unusable clip(s), each named above", file=sys.stderr)
    print(f"report: {Path(m['out_dir']) / 'report.md'}")
    return 1 if m["skipped"] else 0


def _cmd_predict(args) -> int:
    from .core import records
    from .core.audio import expand_inputs
    from .core.inference import SceneClassifier

    if any(str(item) == "" for item in args.inputs):
        raise SoundsceneError('an input path is empty (""): name the files or folders to classify')
    classifier = SceneClassifier.from_file(args.model, window_seconds=args.window, hop_seconds=args.hop,
                                           silence_dbfs=args.silence_dbfs, calibration_db=args.calibration_db,
                                           levels=not args.no_levels)
    inputs = expand_inputs(args.inputs)
    width = max([len(records.printable(i.name)) for i in inputs if i.path] or [0])
    writer = records.RecordWriter(sys.stdout, args.format, classifier.classes, width=width)
    failed = done = 0
    try:
        for item, prediction in classifier.classify_inputs(inputs, overview=args.plot is not None,
                                                            progress=len(inputs) > 20 and sys.stderr.isatty()):
            record = prediction.to_record()
            if args.plot is not None and prediction.error is None:
                record["plot"] = _plot_timeline(prediction, args.plot, done + 1)
                print(f"wrote {_shown(record['plot'])}", file=sys.stderr)
            writer.write(record)
            done += 1
            if "error" in record:
                failed += 1
                _error_line(record["error"])
            elif record.get("warning"):
                print(f"warning: {record['path']}: {record['warning']}", file=sys.stderr)
    finally:
        writer.close()
    if failed:
        print(f"{failed} of {done} input(s) failed; {done - failed} classified", file=sys.stderr)
    return 1 if failed else 0


def _plot_timeline(prediction, folder: Path, number: int) -> str:
    from .core.plots import plot_timeline

    from .core.records import printable

    stem = printable(Path(prediction.path).stem).replace("\\", "_")
    out = folder / f"{number:03d}-{stem}.png"
    plot_timeline(overview=prediction.overview, duration=prediction.duration_seconds, segments=prediction.segments(),
                  windows=prediction.windows, classes=prediction.classes, path=out,
                  title=f"{printable(prediction.path)}: {prediction.label}")
    return str(out)


def _sensor_args(args):
    """listen's options with those of --config filled in (the command line wins); the model is required."""
    from .apps.sensor.settings import apply_config, options_given, subparser

    if args.config is not None:
        parser = _parser()
        apply_config(subparser(parser, args.command), args, options_given(parser, args.argv), args.config)
    if args.model is None:
        raise SoundsceneError(f"{args.command} needs a MODEL (model.onnx), on the command line or as model = "
                              "\"...\" in --config")
    return args


def _sensor_classifier(args):
    from .core.inference import SceneClassifier

    return SceneClassifier.from_file(args.model, window_seconds=args.window, hop_seconds=args.hop,
                                     silence_dbfs=args.silence_dbfs, calibration_db=args.calibration_db,
                                     levels=not args.no_levels)


def _sensor_publisher(args, classifier):
    """The MQTT publisher of --mqtt (with its spool), or None."""
    from .apps.broker import settings_from_args

    broker = settings_from_args(args)  # None without --mqtt
    if broker is None:
        if args.spool is not None:
            raise SoundsceneError("--spool keeps MQTT messages: it needs --mqtt")
        return None
    from .apps.mqtt import SensorPublisher
    from .apps.sensor.run import model_description

    if not args.sensor_id:
        raise SoundsceneError("--mqtt needs --sensor-id ID (the topics are soundscene/<id>/...)")
    return SensorPublisher.for_broker(broker, args.sensor_id, window_seconds=classifier.window_seconds,
                                      hop_seconds=classifier.hop_seconds, model=model_description(classifier),
                                      spool=args.spool, spool_max_mb=args.spool_max_mb)


def _cmd_listen(args) -> int:
    from .apps.listen import live_source
    from .apps.sensor.notify import Notifier
    from .apps.sensor.run import run_sensor

    args = _sensor_args(args)
    classifier = _sensor_classifier(args)
    blocks = live_source(stdin=args.stdin, rate=args.rate, channels=args.channels, sample_format=args.sample_format,
                         device=args.device)
    publisher = _sensor_publisher(args, classifier)
    try:
        made = run_sensor(classifier, blocks, input_rate=args.rate, channels=args.channels, publisher=publisher,
                          print_lines=not args.quiet, smoothing=args.smoothing, dwell=args.dwell,
                          level_interval=args.level_interval, health_interval=args.health_interval,
                          notifier=Notifier.from_environ())
    finally:
        if publisher is not None:
            publisher.close()
    if made == 0:
        print(f"warning: the input ended before one window ({classifier.window_seconds:g} s) was heard",
              file=sys.stderr)
    return 0


def _cmd_sensor_check(args) -> int:
    from .apps.broker import settings_from_args
    from .apps.listen import live_source
    from .apps.sensor.check import check_sensor

    args = _sensor_args(args)
    if not 0.1 <= args.seconds <= 60:  # also refuses nan
        raise SoundsceneError(f"--seconds {args.seconds:g} is outside 0.1..60 s")
    blocks = None
    if not (args.stdin and sys.stdin.isatty()):
        def blocks():
            return live_source(stdin=args.stdin, rate=args.rate, channels=args.channels,
                               sample_format=args.sample_format, device=args.device)
    ok = True
    for line in check_sensor(load_model=lambda: _sensor_classifier(args), blocks=blocks, rate=args.rate,
                             seconds=args.seconds, spool=args.spool, spool_max_mb=args.spool_max_mb,
                             broker=settings_from_args(args), sensor_id=args.sensor_id):
        print(line.text, flush=True)
        ok = ok and line.ok
    return 0 if ok else 1


def _cmd_serve(args) -> int:
    from .apps.serve import run_server

    run_server(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
               calibration_db=args.calibration_db, levels=not args.no_levels)
    return 0


def _cmd_calibrate(args) -> int:
    from .core.levels import calibrate_file

    offset = calibrate_file(args.recording, reference_db=args.reference_db, frequency=args.frequency)
    print(f"{offset:.1f}")
    print(f"calibration: {_shown(args.recording)} reads {args.reference_db:g} dB SPL with --calibration-db "
          f"{offset:.1f}", file=sys.stderr)
    return 0


def _cmd_export(args) -> int:
    from .apps.export import export_onnx, verification_clips
    from .core.modelfile import load_model_file

    bundle = load_model_file(args.model)  # once: verification clips and the export share it
    clips, labels = verification_clips(bundle, args.verify)
    report = export_onnx(bundle, args.out, opset=args.opset, quantize=args.quantize, verify_with=clips,
                         labels=labels)
    print(report.summary())
    return 0


def _cmd_schema(args) -> int:
    from .core.records import FIELDS, dumps, json_schema, schema_of

    if args.kind and args.kind not in FIELDS:
        raise SoundsceneError(f"no record kind {args.kind!r}; the kinds are {', '.join(FIELDS)}")
    print(dumps(schema_of(args.kind) if args.kind else json_schema(), indent=2))
    return 0


def _presets(path):
    from .apps.eq import DEFAULT_PRESETS, load_presets

    return load_presets(path) if path else DEFAULT_PRESETS


def _cmd_eq(args) -> int:
    from .apps.eq import ambient_from_prediction, equalize_file, format_presets, schedule_from_prediction
    from .apps.eq.playback import describe_ambient

    presets = _presets(args.presets)
    if args.list_presets:
        print(format_presets(presets))
        return 0
    session, ambient = _eq_session(args, record_dose=args.record_dose), []
    if args.scene:
        if len(args.inputs) not in (1, 2):
            raise SoundsceneError("give the music (and optionally the model first): soundscene eq [MODEL] MUSIC "
                                  "--scene NAME -o OUT.wav")
        music = Path(args.inputs[-1])
        if args.scene not in presets:
            raise SoundsceneError(f"--scene {args.scene!r} has no preset; known: {', '.join(sorted(presets))}")
        schedule, what = [(0.0, args.scene)], f"scene {args.scene} (forced)"
        session.remember(args.scene)
    else:
        if len(args.inputs) != 2 or not args.ambient:
            raise SoundsceneError("usage: soundscene eq MODEL MUSIC --ambient RECORDING -o OUT.wav "
                                  "(or --scene NAME instead of a model and an ambient recording)")
        from .core.inference import SceneClassifier

        model, music = Path(args.inputs[0]), Path(args.inputs[1])
        prediction = SceneClassifier.from_file(model, calibration_db=args.calibration_db).classify_file(args.ambient)
        schedule = schedule_from_prediction(prediction, presets, blend=args.blend, labels=not args.blend)
        ambient, what = ambient_from_prediction(prediction), describe_ambient(prediction)
    if not args.out:
        raise SoundsceneError("give the output file with -o OUT.wav")
    if args.follow_level and not ambient:
        print("warning: no ambient levels (no ambient recording, or its records carry none): level following is off",
              file=sys.stderr)
    done = []
    out = equalize_file(music, args.out, schedule=schedule, presets=presets, crossfade_seconds=args.crossfade,
                        ambient=ambient, on_done=done.append, **session.options(trace=args.plot is not None))
    print(f"equalized {_shown(music)} for {what}")
    print(f"  wrote {_shown(out)}")
    _eq_finish(args, session, done[0], title=f"{_shown(music.name)}: {what}")
    if args.plot_curves:
        from .apps.eq import curve_for_scene, plot_curves

        curves = {}
        for start, curve in schedule:
            name = curve if isinstance(curve, str) else f"blend at {start:.1f} s"
            curves.setdefault(name, curve_for_scene(presets, curve) if isinstance(curve, str) else curve)
        plot_curves(dict(list(curves.items())[:8]), args.plot_curves)
        print(f"  curves: {_shown(args.plot_curves)}")
    return 0


def _eq_finish(args, session, equalizer, *, title: str) -> None:
    for message in equalizer.pop_messages():
        print(message, file=sys.stderr)
    for line in session.finish(equalizer):
        print(f"  {line}")
    if args.plot:
        calibrated = args.calibration_db is not None and args.headphone_db_spl_at_fs is not None
        session.plot(equalizer, args.plot, title=title, calibrated=calibrated)
        print(f"  plot: {_shown(args.plot)}")


def _cmd_eq_live(args) -> int:
    from .apps.eq import equalize_live
    from .apps.eq.playback import ambient_text
    from .apps.listen import live_source, speaker
    from .core.inference import SceneClassifier

    presets = _presets(args.presets)
    session = _eq_session(args, record_dose=True)
    play = None if args.out else speaker()
    classifier = SceneClassifier.from_file(args.model, calibration_db=args.calibration_db)
    blocks = live_source(stdin=args.ambient_stdin, rate=args.rate, channels=args.channels,
                         sample_format=args.sample_format)
    stream = classifier.stream(input_rate=args.rate, channels=args.channels, min_dwell_seconds=args.dwell)

    def report(decision):
        if decision.changed:
            ambient = ambient_text(decision)
            print(f"{decision.time:8.2f} s  scene {decision.label} ({decision.confidence:.0%}): EQ preset "
                  f"{decision.label if decision.label in presets else 'default'}{', ' if ambient else ''}{ambient}",
                  flush=True)

    done = []
    try:
        out = equalize_live(args.music, args.out, ambient_blocks=blocks, stream=stream, presets=presets,
                            ambient_rate=args.rate, crossfade_seconds=args.crossfade, on_decision=report, play=play,
                            on_message=lambda m: print(m, file=sys.stderr, flush=True), on_done=done.append,
                            **session.options(trace=args.plot is not None))
        if out is not None:
            print(f"wrote {_shown(out)}")
    finally:  # Ctrl-C ends a live session: the dose so far is still recorded
        if done:
            _eq_finish(args, session, done[0], title=f"{_shown(Path(args.music).name)}: live")
    return 0


def _cmd_synth(args) -> int:
    from .training.synth import DEFAULT_DIFFICULTY, write_synthetic_dataset

    difficulty = DEFAULT_DIFFICULTY if args.difficulty is None else args.difficulty
    manifest = write_synthetic_dataset(args.out, clips_per_class=args.clips_per_class, seconds=args.seconds,
                                       sample_rate=args.sample_rate, seed=args.seed, difficulty=difficulty)
    print(f"wrote {_shown(manifest)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
