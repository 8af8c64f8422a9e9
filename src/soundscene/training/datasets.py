"""The public data sets' layouts, each selected by a short name (``tau2019:PATH`` ...).

Each loader reads the data set's own metadata files as published and returns a
:class:`~soundscene.training.data.Manifest` whose items carry the official folds or
train/test lists and the groups that must never be split:

========================  ===============================================  ==================================
name                      files read                                       protocol
========================  ===============================================  ==================================
``tau2019``               meta.csv, evaluation_setup/fold1_{train,          official fold-1 train / evaluate
                          evaluate}.csv (TAB-separated, with headers)      lists; groups = identifier
                                                                           (city-location)
``tau2020``               the same files; devices a, b, c, s1-s6            as tau2019; accuracy per device
``urbansound8k``          metadata/UrbanSound8K.csv, audio/foldN/           10 predefined folds (never
                                                                           reshuffled); groups = fsID; every
                                                                           slice scored, however short
``esc50`` / ``esc10``     meta/esc50.csv, audio/                            5 predefined folds; groups =
                                                                           src_file; esc10: the subset
``folder`` / ``csv``      a class-per-folder tree / a path,label CSV        see :func:`load_manifest`
========================  ===============================================  ==================================

A plain path is recognised by the files it holds (a TAU, UrbanSound8K or
ESC-50 root), else read as a class folder or CSV manifest.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import AudioConfig
from ..core.records import printable
from .data import Item, Manifest, describe_bad_clip, load_manifest, parse_fold, read_table
from ..errors import DataError

LAYOUTS: dict[str, str] = {
    "tau2019": "TAU Urban Acoustic Scenes 2019 development (DCASE 2019 task 1A), official fold-1 split",
    "tau2020": "TAU Urban Acoustic Scenes 2020 Mobile development (DCASE 2020 task 1A), devices a-c, s1-s6",
    "urbansound8k": "UrbanSound8K, 10 predefined folds, groups by Freesound recording (fsID)",
    "esc50": "ESC-50, 5 predefined folds, groups by source recording (src_file)",
    "esc10": "ESC-10 subset of ESC-50 (meta/esc50.csv with esc10 == True)",
    "folder": "own recordings: one sub-folder per class",
    "csv": "own recordings: CSV manifest path,label[,fold][,group][,device]",
}

# UrbanSound8K's slices run from a fraction of a second to 4 s, and its 10-fold protocol scores all 8,732 of
# them: its clips are accepted at any length (padded to the clip length by audio.pad_mode, tiled or zero-padded
# as is usual for this data set) in place of audio.min_seconds.
URBANSOUND8K_MIN_SECONDS = 0.0

# The file name (without extension) minus a trailing segment number:
# "library_rec1_seg003" -> "library_rec1", "park-0-3" -> "park-0", "street 12" -> "street".
DEFAULT_GROUP_PATTERN = r"^(?P<group>.+?)[-_ ]*(?:seg(?:ment)?)?[-_ ]*\d+$"


def resolve_dataset(spec: str | Path, *, check_files: bool = True, group_pattern: str | None = None) -> Manifest:
    """Load a data set from ``NAME:PATH`` (see :data:`LAYOUTS`) or a plain path.

    group_pattern: for own recordings without a group column, a regular
    expression applied to each file's name without extension; the named group
    ``group`` (or the first capture group) becomes the item's group, prefixed by
    its folder.  "default" uses :data:`DEFAULT_GROUP_PATTERN`.
    """
    text = str(spec)
    name, sep, rest = text.partition(":")
    if sep and name in LAYOUTS and rest:
        layout, path = name, Path(rest)
    else:
        layout, path = _detect_layout(Path(text)), Path(text)
    if not path.exists():
        raise DataError(f"{path}: does not exist")
    loaders: dict[str, Callable[[Path], Manifest]] = {
        "tau2019": lambda p: load_tau(p, mobile=False),
        "tau2020": lambda p: load_tau(p, mobile=True),
        "urbansound8k": load_urbansound8k,
        "esc50": lambda p: load_esc50(p, esc10=False),
        "esc10": lambda p: load_esc50(p, esc10=True),
        "folder": lambda p: load_manifest(p, check_files=False),
        "csv": lambda p: load_manifest(p, check_files=False),
    }
    manifest = loaders[layout](path)
    if group_pattern:
        manifest = with_groups_from_names(manifest, DEFAULT_GROUP_PATTERN if group_pattern == "default"
                                          else group_pattern)
    if check_files:
        for item in manifest.items:
            if not item.path.is_file():
                raise DataError(f"{item.where}: audio file {item.path} does not exist")
    return manifest


def data_name(spec: str | Path) -> str:
    """A short name for a data set spec, for folder names: "tau2019:/data/TAU-dev" -> "TAU-dev",
    "labels.csv" -> "labels", "campus/" -> "campus"."""
    text = str(spec)
    name, sep, rest = text.partition(":")
    path = Path(rest) if sep and name in LAYOUTS and rest else Path(text)
    return (path.stem if path.suffix else path.name) or "data"


def _detect_layout(path: Path) -> str:
    if path.is_dir():
        if (path / "meta.csv").is_file() and (path / "evaluation_setup").is_dir():
            return "tau2020" if _tau_has_mobile_devices(path / "meta.csv") else "tau2019"
        if (path / "metadata" / "UrbanSound8K.csv").is_file():
            return "urbansound8k"
        if (path / "meta" / "esc50.csv").is_file():
            return "esc50"
        return "folder"
    return "csv"


def _tau_has_mobile_devices(meta: Path) -> bool:
    rows = _read_table(meta, delimiter="\t", required=("filename", "scene_label"))
    return any((r.get("source_label") or "a") not in ("a",) for r, _ in rows)


def _read_table(path: Path, *, delimiter: str, required: tuple[str, ...]) -> list[tuple[dict, int]]:
    return read_table(path, delimiter=delimiter, required=required,
                      hint="; is this the data set's root folder?" if not path.is_file() else "")


def load_tau(root: str | Path, *, mobile: bool = False) -> Manifest:
    """TAU Urban Acoustic Scenes 2019 (mobile=False) or 2020 Mobile (mobile=True) development set.

    Items are the files listed in evaluation_setup/fold1_train.csv (subset
    "train") and fold1_evaluate.csv (subset "test"); labels, identifier (the
    group: city-location) and device (source_label) come from meta.csv.
    """
    root = Path(root).resolve()
    meta_rows = _read_table(root / "meta.csv", delimiter="\t", required=("filename", "scene_label", "identifier"))
    meta = {row["filename"]: (row, n) for row, n in meta_rows}
    setup = root / "evaluation_setup"
    items: list[Item] = []
    for subset, list_name in (("train", "fold1_train.csv"), ("test", "fold1_evaluate.csv")):
        path = setup / list_name
        for row, n in _read_table(path, delimiter="\t", required=("filename", "scene_label")):
            where = f"{path}, row {n}"
            if row["filename"] not in meta:
                raise DataError(f"{where}: {row['filename']} is not in {root / 'meta.csv'}")
            info, _ = meta[row["filename"]]
            if info["scene_label"] != row["scene_label"]:
                raise DataError(f"{where}: label {row['scene_label']} disagrees with meta.csv ({info['scene_label']})")
            device = info.get("source_label") or _device_from_name(row["filename"])
            items.append(Item(root / row["filename"], row["scene_label"], None, info["identifier"], where,
                              name=row["filename"], device=device, subset=subset))
    if not items:
        raise DataError(f"{setup}: the fold-1 lists are empty")
    return Manifest(items, sorted({i.label for i in items}), f"{'tau2020' if mobile else 'tau2019'}:{root}")


def _device_from_name(filename: str) -> str | None:
    match = re.search(r"-([a-z]\d?)\.\w+$", filename)
    return match.group(1) if match else None


def load_urbansound8k(root: str | Path) -> Manifest:
    """UrbanSound8K: metadata/UrbanSound8K.csv and audio/fold<N>/<slice_file_name>; groups by fsID.

    Every slice is accepted however short (:data:`URBANSOUND8K_MIN_SECONDS` in place of audio.min_seconds):
    the official protocol scores all of them, short ones padded to the clip length by audio.pad_mode.
    """
    root = Path(root).resolve()
    path = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_table(path, delimiter=",", required=("slice_file_name", "fsID", "fold", "class"))
    items = []
    for row, n in rows:
        where = f"{path}, row {n}"
        fold = parse_fold(row["fold"], where)
        name = f"audio/fold{fold}/{row['slice_file_name']}"
        items.append(Item(root / name, row["class"], fold, f"fs{row['fsID']}", where, name=name,
                          min_seconds=URBANSOUND8K_MIN_SECONDS))
    if not items:
        raise DataError(f"{path}: lists no clips")
    return Manifest(items, sorted({i.label for i in items}), f"urbansound8k:{root}")


def load_esc50(root: str | Path, *, esc10: bool = False) -> Manifest:
    """ESC-50 (or its ESC-10 subset): meta/esc50.csv and audio/<filename>; groups by src_file."""
    root = Path(root).resolve()
    path = root / "meta" / "esc50.csv"
    rows = _read_table(path, delimiter=",", required=("filename", "fold", "category", "esc10", "src_file"))
    items = []
    for row, n in rows:
        if esc10 and row["esc10"].lower() not in ("true", "1"):
            continue
        where = f"{path}, row {n}"
        fold = parse_fold(row["fold"], where)
        name = f"audio/{row['filename']}"
        items.append(Item(root / name, row["category"], fold, row["src_file"], where, name=name))
    if not items:
        raise DataError(f"{path}: no clips{' marked esc10' if esc10 else ''}")
    return Manifest(items, sorted({i.label for i in items}), f"{'esc10' if esc10 else 'esc50'}:{root}")


def with_groups_from_names(manifest: Manifest, pattern: str) -> Manifest:
    """Give items without a group one derived from their file name by ``pattern`` (see resolve_dataset)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"group pattern {pattern!r} is not a valid regular expression ({exc})") from None
    items = []
    for item in manifest.items:
        if item.group is not None:
            items.append(item)
            continue
        match = regex.search(item.path.stem)
        if not match:
            raise DataError(f"{item.where}: file name {item.path.name!r} does not match the group pattern {pattern!r}")
        group = match.groupdict().get("group") or (match.group(1) if regex.groups else match.group(0))
        prefix = Path(item.name).parent.as_posix() if item.name else item.path.parent.name
        items.append(replace(item, group=f"{prefix}/{group}"))
    return Manifest(items, manifest.classes, manifest.source)


def check_dataset(manifest: Manifest, *, full: bool = False, audio: AudioConfig | None = None,
                  progress: bool = True) -> dict:
    """Look at every file of a data set before training on it.

    Reads each header (with ``full``, decodes each file completely, which also
    finds truncated files, NaN or out-of-range samples and near-silent
    recordings).  Every file that training or prediction would refuse is
    named with its manifest row: unreadable, too short (``audio.min_seconds``, or the
    data set's own minimum: UrbanSound8K takes any length), too long
    (``audio.max_seconds``), damaged.  Returns a dict with n_files,
    class_counts, duration_seconds (min/median/max), sample_rates, channels,
    subtypes and devices (value -> count), folds and official split sizes,
    n_groups, unreadable [{file, where, reason}] (every file that would be
    refused), errors (one line per refused file: the reason and its manifest
    row, for ``error:`` lines on stderr), quiet [{file, where, reason}] (with
    ``full``: RMS level below ``LOW_LEVEL_DBFS``) and problems (sentences).
    """
    from collections import Counter

    from tqdm.auto import tqdm

    from ..core.audio import LOW_LEVEL_DBFS, audio_info, check_length, level_dbfs, load_audio
    from ..errors import AudioError

    audio = audio or AudioConfig()
    durations, rates, channels, subtypes, unreadable, quiet = [], Counter(), Counter(), Counter(), [], []
    errors = []
    for item in tqdm(manifest.items, desc="checking files", unit="file", disable=not progress):
        try:
            info = audio_info(item.path)
            shortest = audio.min_seconds if item.min_seconds is None else item.min_seconds
            if info.duration_seconds < shortest:
                raise AudioError(f"{item.path}: {info.duration_seconds:.6g} s is shorter than audio.min_seconds "
                                 f"({shortest:g} s)")
            if info.duration_seconds > audio.max_seconds:
                raise AudioError(f"{item.path}: {info.duration_seconds:.1f} s is longer than audio.max_seconds "
                                 f"({audio.max_seconds:g} s)")
            check_length(info)  # a WAV or Ogg file cut short, from its header and last page
            if full:
                waveform = load_audio(item.path, sample_rate=info.sample_rate, channels=1, min_seconds=0.0)
                level = level_dbfs(waveform)
                if level < LOW_LEVEL_DBFS:
                    quiet.append({"file": str(item.path), "where": item.where,
                                  "reason": f"{item.path}: near-silent: level {level:.1f} dBFS is below "
                                            f"{LOW_LEVEL_DBFS:g} dBFS"})
        except AudioError as exc:
            unreadable.append({"file": str(item.path), "where": item.where, "reason": str(exc)})
            errors.append(describe_bad_clip(str(exc), item, advice=False))
            continue
        durations.append(info.duration_seconds)
        rates[info.sample_rate] += 1
        channels[info.channels] += 1
        subtypes[info.subtype] += 1
    counts = manifest.class_counts()
    report = {
        "source": manifest.source,
        "n_files": len(manifest),
        "class_counts": counts,
        "duration_seconds": ({"min": float(np.min(durations)), "median": float(np.median(durations)),
                              "max": float(np.max(durations))} if durations else None),
        "sample_rates": dict(sorted(rates.items())),
        "channels": dict(sorted(channels.items())),
        "subtypes": dict(sorted(subtypes.items())),
        "devices": dict(sorted(Counter(i.device for i in manifest.items if i.device).items())),
        "folds": dict(sorted(Counter(i.fold for i in manifest.items if i.fold is not None).items())),
        "official_split": dict(Counter(i.subset for i in manifest.items if i.subset)),
        "n_groups": len({i.group for i in manifest.items if i.group is not None}),
        "unreadable": unreadable,
        "errors": errors,
        "quiet": quiet,
    }
    report["problems"] = _problems(report, counts)
    return report


def _problems(report: dict, counts: dict) -> list[str]:
    """The sentences a data set check ends with: what would be refused, quiet files, groups, class balance."""
    from ..core.audio import LOW_LEVEL_DBFS

    problems = []
    if report["unreadable"]:
        problems.append(f"{len(report['unreadable'])} file(s) would be refused; fix them or train with --skip-bad")
    if report["quiet"]:
        problems.append(f"{len(report['quiet'])} file(s) are near-silent (below {LOW_LEVEL_DBFS:g} dBFS); check "
                        "their labels and gain")
    if report["n_groups"] == 0 and not report["folds"]:
        problems.append("no groups: if clips are segments of longer recordings, a random split inflates accuracy "
                        "(add a group column or use --group-pattern default)")
    smallest = min(counts.values())
    if smallest < 5:
        problems.append(f"class(es) with fewer than 5 files: {[c for c, n in counts.items() if n < 5]}")
    if max(counts.values()) > 5 * max(smallest, 1):
        problems.append("classes are imbalanced by more than 5:1; watch the macro class-wise accuracy")
    return problems


def format_check(report: dict) -> str:
    """A human-readable summary of :func:`check_dataset`'s report."""
    d = report["duration_seconds"]
    lines = [f"data set: {report['source']}", f"files: {report['n_files']}",
             "classes: " + ", ".join(f"{c} ({n})" for c, n in report["class_counts"].items())]
    if d:
        lines.append(f"durations: {d['min']:.2f} s min, {d['median']:.2f} s median, {d['max']:.2f} s max")
    for key, label in (("sample_rates", "sample rates (Hz)"), ("channels", "channels"), ("subtypes", "encodings"),
                       ("devices", "devices"), ("folds", "folds"), ("official_split", "official split")):
        if report[key]:
            lines.append(f"{label}: " + ", ".join(f"{k}: {v}" for k, v in report[key].items()))
    lines.append(f"groups: {report['n_groups']}")
    for bad in report["unreadable"]:
        lines.append(printable(f"refused: {bad['reason']}" + (f" ({bad['where']})" if bad["where"] != bad["file"]
                                                                else "")))
    for q in report.get("quiet", []):
        lines.append(printable(f"warning: {q['reason']}" + (f" ({q['where']})" if q["where"] != q["file"] else "")))
    lines += [f"problem: {p}" for p in report["problems"]] or ["no problems found"]
    return "\n".join(lines)
