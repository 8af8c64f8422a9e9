"""Data sets: manifests (which file has which label, fold and group), honest splits,
features computed once, and the patch data set the network trains on.

A data set is given either as a folder with one sub-folder per class, or as a
CSV manifest with columns ``path,label`` and optional ``fold`` and ``group``
(paths relative to the CSV).  Splits never put one group on both sides, and
predefined folds are used as they are, never reshuffled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.audio import AUDIO_EXTENSIONS, audio_info, load_clip
from ..config import Config
from ..errors import AudioError, DataError, warn
from ..core.features import FrontEnd, patch_view

SPLITS = ("train", "val", "test")
# Columns read as the group (recording session, location, source) when no "group" column exists.
GROUP_COLUMNS = ("group", "source_id", "src_file", "identifier")


@dataclass(frozen=True)
class Item:
    """One labelled recording.

    path: the audio file.  label: its class.  fold: predefined fold, if any.
    group: recording session / location / source; never split across sides.
    where: where it was declared (file and row, for error messages).
    name: the file name as the data set writes it (e.g. "audio/x.wav", for DCASE output).
    device: recording device, if known (TAU 2020 Mobile: a, b, c, s1-s6).
    subset: "train" or "test" when the data set has an official split list.
    digest: the file's content digest (:func:`file_digest`), once computed.
    audio_digest: the digest of its decoded clip (:func:`audio_digest`), once its features are computed.
    min_seconds: the shortest file the data set accepts when it overrides ``audio.min_seconds``
        (UrbanSound8K: any length, short clips are padded to the clip length by ``audio.pad_mode``).
    """

    path: Path
    label: str
    fold: int | None = None
    group: str | None = None
    where: str = ""
    name: str = ""
    device: str | None = None
    subset: str | None = None
    digest: str | None = None
    audio_digest: str | None = None
    min_seconds: float | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.path.name

    @property
    def group_key(self) -> str:
        """The group, or the file itself when none was given."""
        return self.group if self.group is not None else str(self.path)


@dataclass
class Manifest:
    """Items and their ordered class names (sorted, unless given)."""

    items: list[Item]
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.items)

    def class_counts(self) -> dict[str, int]:
        counts = {c: 0 for c in self.classes}
        for item in self.items:
            counts[item.label] += 1
        return counts

    @property
    def has_folds(self) -> bool:
        return all(i.fold is not None for i in self.items)

    @property
    def has_official_split(self) -> bool:
        return all(i.subset in ("train", "test") for i in self.items)


def load_manifest(source: str | Path, *, check_files: bool = True) -> Manifest:
    """A folder (one sub-folder per class) or a CSV manifest (``path,label[,fold][,group]``).

    The group column may also be called source_id, src_file or identifier (the
    names ESC and TAU use); clips of one group never land on two sides of a split.

    Raises DataError naming the file and row for missing columns, empty
    labels, bad folds and (with check_files) audio files that do not exist.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: does not exist; give a folder with one sub-folder per class "
                        "or a CSV with columns path,label")
    if source.is_dir():
        manifest = _manifest_from_folder(source)
    elif source.suffix.lower() in (".csv", ".tsv", ".txt"):
        manifest = _manifest_from_csv(source)
    else:
        raise DataError(f"{source}: expected a folder or a .csv manifest")
    if check_files:
        for item in manifest.items:
            if not item.path.is_file():
                raise DataError(f"{item.where}: audio file {item.path} does not exist")
    return manifest


def _hidden(path: Path, root: Path) -> bool:
    """Dot-files and folders, and the __MACOSX folders that zip files from macOS carry."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(root).parts)


def _manifest_from_folder(root: Path) -> Manifest:
    root = root.resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p, root))
    items = []
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not _hidden(path, root):
                items.append(Item(path, class_dir.name, where=str(path),
                                  name=path.relative_to(root).as_posix()))
    if not items:
        raise DataError(f"{root}: no audio files found in class sub-folders "
                        f"(expected {root}/<class>/<file>.wav ...)")
    classes = sorted({i.label for i in items})
    if len(classes) < 2:
        raise DataError(f"{root}: found only one class ({classes[0]}); need at least two sub-folders")
    return Manifest(items, classes, str(root))


def read_table(path: Path, *, delimiter: str | None = None, required: tuple[str, ...] = (),
               hint: str = "") -> list[tuple[dict[str, str], int]]:
    """Rows of a delimited UTF-8 file with a header, each with its line number (the header is line 1).

    delimiter None means TAB when the header holds one, else comma.  Raises
    DataError naming the file (and line) for a missing file, text that is not
    UTF-8, missing columns, and rows with more fields than the header.
    """
    if not path.is_file():
        raise DataError(f"{path}: does not exist{hint}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text (byte {exc.start}); save it with UTF-8 encoding") from None
    if delimiter is None:
        first = text.splitlines()[0] if text else ""
        delimiter = "\t" if "\t" in first else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in required if c not in columns]
    if missing:
        sep = "TAB" if delimiter == "\t" else repr(delimiter)
        raise DataError(f"{path}: missing column(s) {missing}; found {columns} ({sep}-separated){hint}")
    rows = []
    for row in reader:
        if None in row:
            raise DataError(f"{path}, row {reader.line_num}: more fields than the header {columns}; "
                            "quote values that contain the separator")
        rows.append(({(k or "").strip(): (v or "").strip() for k, v in row.items()}, reader.line_num))
    return rows


def _manifest_from_csv(path: Path) -> Manifest:
    rows = read_table(path, delimiter="\t" if path.suffix.lower() == ".tsv" else None, required=("path", "label"),
                      hint="; a manifest needs path,label and optionally fold,group")
    items = []
    for row, row_number in rows:
        where = f"{path}, row {row_number}"
        if not row.get("path"):
            raise DataError(f"{where}: empty path")
        if not row.get("label"):
            raise DataError(f"{where}: empty label")
        fold = parse_fold(row["fold"], where) if row.get("fold") else None
        group = next((row[c] for c in GROUP_COLUMNS if row.get(c)), None)
        items.append(Item((path.parent / row["path"]).resolve(), row["label"], fold, group, where,
                          name=row["path"], device=row.get("device") or None))
    if not items:
        raise DataError(f"{path}: the manifest lists no files")
    folds = {i.fold for i in items}
    if None in folds and len(folds) > 1:
        first = next(i for i in items if i.fold is None)
        raise DataError(f"{first.where}: fold is empty while other rows have one; fill every fold or none")
    classes = sorted({i.label for i in items})
    if len(classes) < 2:
        raise DataError(f"{path}: only one label ({classes[0]}); need at least two classes")
    return Manifest(items, classes, str(path))


def parse_fold(text: str, where: str) -> int:
    """A fold number from a metadata cell; DataError naming ``where`` (file, row) if it is not an integer."""
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: fold '{text}' is not an integer") from None


def split_manifest(manifest: Manifest, *, test_fold: int | None = None, val_fold: int | None = None,
                   test_fraction: float | None = None, val_fraction: float = 0.1,
                   seed: int = 0) -> dict[str, list[Item]]:
    """Split into train / val / test without putting any group on two sides.

    Test: the items of ``test_fold`` (predefined folds, as they are) or a grouped,
    class-stratified ``test_fraction``; with neither, the data set's official
    test list when it has one (TAU), else the highest fold when the manifest
    has folds, else 20 %.  Validation (for choosing the best epoch):
    ``val_fold``, else a grouped, stratified ``val_fraction`` of what is left.

    Returns:
        {"train": [...], "val": [...], "test": [...]}, each in manifest order.
    """
    items = list(manifest.items)
    folds = sorted({i.fold for i in items if i.fold is not None})
    if (test_fold is not None or val_fold is not None) and not manifest.has_folds:
        raise DataError(f"{manifest.source}: has no fold column, so --test-fold/--val-fold cannot be used; "
                        "use --test-fraction/--val-fraction")
    for name, fold in (("test", test_fold), ("validation", val_fold)):
        if fold is not None and fold not in folds:
            raise DataError(f"{name} fold {fold} is not in {manifest.source} (folds: {folds})")
    if test_fold is not None and test_fraction is not None:
        raise DataError("give either a test fold or a test fraction, not both")
    if test_fold is not None and test_fold == val_fold:
        raise DataError("the test fold and the validation fold must differ")
    if test_fold is None and test_fraction is None and manifest.has_official_split:
        test = [i for i in items if i.subset == "test"]
        rest = [i for i in items if i.subset == "train"]
    elif test_fold is None and test_fraction is None:
        if manifest.has_folds and len(folds) >= 2:
            test_fold = [f for f in folds if f != val_fold][-1]
        else:
            test_fraction = 0.2
    if test_fold is not None:
        test = [i for i in items if i.fold == test_fold]
        rest = [i for i in items if i.fold != test_fold]
    elif test_fraction is not None:
        rest, test = _grouped_fraction(items, test_fraction, seed)
    if val_fold is not None:
        val = [i for i in rest if i.fold == val_fold]
        train = [i for i in rest if i.fold != val_fold]
    else:
        train, val = _grouped_fraction(rest, val_fraction, seed + 1)
    for name, part in (("training", train), ("validation", val), ("test", test)):
        if not part:
            raise DataError(f"the {name} split of {manifest.source} is empty; use more data or other split options")
    for name, part in (("training", train), ("test", test)):
        absent = sorted(set(manifest.classes) - {i.label for i in part})
        if absent and name == "training":
            raise DataError(f"class(es) {absent} of {manifest.source} have no clip in the training split; "
                            "add data or choose other split options")
        if absent:
            warn(f"class(es) {absent} have no clip in the test split; their accuracy cannot be measured")
    official = test_fold is None and test_fraction is None and manifest.has_official_split
    # An official train/test list is the protocol as published; validation is still carved by group.
    _check_no_group_crosses({"train": train, "val": val} if official else {"train": train, "val": val, "test": test})
    return {"train": train, "val": val, "test": test}


def _grouped_fraction(items: Sequence[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(kept, held_out): about `fraction` of the groups held out, stratified by class."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < fraction < 1:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    n_splits = max(2, int(round(1 / fraction)))
    labels = [i.label for i in items]
    groups = [i.group_key for i in items]
    n_groups = len(set(groups))
    if n_groups < 2:
        raise DataError("cannot split: all files belong to one group")
    largest_class = max(labels.count(c) for c in set(labels))
    n_splits = min(n_splits, n_groups, largest_class)
    if n_splits < 2:
        raise DataError("too few files to split off a held-out part; add data or give folds")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only k members"
        keep_idx, held_idx = next(splitter.split(np.zeros(len(items)), labels, groups))
    held = set(held_idx.tolist())
    share = len(held) / len(items)
    if abs(share - fraction) > 0.1:
        warn(f"asked to hold out {fraction:.0%} of the data but whole groups and classes allow {share:.0%} "
             f"({len(held)} of {len(items)} files)")
    return ([i for k, i in enumerate(items) if k not in held], [i for k, i in enumerate(items) if k in held])


def _check_no_group_crosses(splits: dict[str, list[Item]]) -> None:
    seen: dict[str, str] = {}
    for name, part in splits.items():
        for item in part:
            other = seen.setdefault(item.group_key, name)
            if other != name:
                raise DataError(f"group '{item.group_key}' is in both the {other} and {name} splits")


def write_split(splits: dict[str, list[Item]], path: Path) -> None:
    """Record a split as CSV (path,label,fold,group,split,name,device,digest,min_seconds) so a run can be resumed
    or audited."""
    from .._io import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "label", "fold", "group", "split", "name", "device", "digest", "min_seconds"])
    for name, part in splits.items():
        for i in part:
            writer.writerow([str(i.path), i.label, "" if i.fold is None else str(i.fold), i.group or "", name,
                             i.name, i.device or "", i.digest or "",
                             "" if i.min_seconds is None else repr(i.min_seconds)])
    atomic_write_text(path, buf.getvalue())


def read_split(path: Path) -> dict[str, list[Item]]:
    """Read a split written by :func:`write_split` (runs made before digests were recorded have none)."""
    if not path.is_file():
        raise DataError(f"{path}: split file is missing; the run folder is incomplete")
    splits: dict[str, list[Item]] = {s: [] for s in SPLITS}
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            item = Item(Path(row["path"]), row["label"], int(row["fold"]) if row["fold"] else None,
                        row["group"] or None, f"{path}, row {n}", name=row.get("name") or "",
                        device=row.get("device") or None, digest=row.get("digest") or None,
                        min_seconds=float(row["min_seconds"]) if row.get("min_seconds") else None)
            splits[row["split"]].append(item)
    return splits


def file_digest(path: str | Path) -> str:
    """BLAKE2b-128 of a file's bytes, hex: the same recording has the same digest wherever it is copied."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def audio_digest(waveform: np.ndarray) -> str:
    """BLAKE2b-128, hex, of a decoded ``(channels, samples)`` clip quantised to 16 bits (with its shape).

    Computed on the clip as the model sees it (at the model's sample rate, cropped or padded to its clip
    length), so lossless re-encodes of one recording (WAV <-> FLAC, another bit depth of the same samples)
    have the same digest; lossy re-encodes, resampled, trimmed-at-the-start or gain-changed copies do not.
    """
    w = np.asarray(waveform, dtype=np.float64)
    q = np.clip(np.round(w * 32768.0), -32768, 32767).astype("<i2")
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{'x'.join(map(str, q.shape))}|".encode())
    h.update(np.ascontiguousarray(q).tobytes())
    return h.hexdigest()


def with_digests(items: Sequence[Item]) -> list[Item]:
    """The items with their content digests filled in (unreadable files keep None)."""
    out = []
    for item in items:
        if item.digest is None:
            try:
                item = replace(item, digest=file_digest(item.path))
            except OSError:
                pass
        out.append(item)
    return out


def warn_if_no_groups(manifest: Manifest) -> None:
    """Warn when a data set gives no groups and a split is about to be made file by file."""
    if all(i.group is None for i in manifest.items):
        warn(f"{manifest.source} gives no groups: if its clips are segments of longer recordings, segments of one "
             "recording can land in training and test and inflate accuracy; add a group column or use "
             "--group-pattern default")


def median_duration(items: Iterable[Item], *, skip_bad: bool = False) -> float:
    """Median duration in seconds of the items' files (read from headers only).

    With skip_bad, unreadable files are left out of the median instead of raising AudioError.
    """
    durations = []
    for item in items:
        try:
            durations.append(audio_info(item.path).duration_seconds)
        except AudioError:
            if not skip_bad:
                raise
    if not durations:
        raise DataError("no readable audio file to take the clip length from")
    return float(np.median(durations))


@dataclass
class FeatureSet:
    """Features of whole clips, computed once: ``features`` (N, channels, rows, frames) float32,
    ``labels`` (N,) int64 class indices, and the items they came from."""

    features: torch.Tensor
    labels: torch.Tensor
    items: list[Item]


def featurize(paths: Sequence[str | Path], config: Config, front_end: FrontEnd, *,
              min_seconds: Sequence[float | None] | None = None,
              digests: dict[int, str] | None = None) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Decode, resample and run the front end on some files, as training and evaluation see them.

    Each clip is cropped or padded to ``config.audio.clip_seconds``.  A file that
    cannot be used (unreadable, silent, too short, NaN...) or whose features are
    not finite is returned in ``bad`` with its one-line reason instead of raising.

    min_seconds: per path, the data set's own minimum length in place of ``audio.min_seconds`` (None: the
    configured one; see :attr:`Item.min_seconds`).  digests: when given, filled with {index:
    :func:`audio_digest` of the decoded clip} for the good paths (the audio is decoded once, here).

    Returns:
        (features ``(n_good, channels, rows, frames)`` float32, indices of the good paths,
        {index: reason} for the others)
    """
    bad: dict[int, str] = {}
    good: list[int] = []
    waves = []
    for k, path in enumerate(paths):
        shortest = min_seconds[k] if min_seconds is not None else None
        audio = config.audio if shortest is None else replace(config.audio, min_seconds=shortest)
        try:
            waves.append(load_clip(path, audio))
            good.append(k)
        except AudioError as exc:
            bad[k] = str(exc)
    if not good:
        return np.zeros((0, config.audio.channels, config.features.n_rows, 0), np.float32), [], bad
    feats = front_end(torch.from_numpy(np.stack(waves))).numpy()
    finite = np.isfinite(feats).reshape(len(good), -1).all(axis=1)
    for k in [g for g, ok in zip(good, finite) if not ok]:
        bad[k] = f"{paths[k]}: its features are not finite (samples too large?)"
    if digests is not None:
        digests.update({g: audio_digest(w) for g, w, ok in zip(good, waves, finite) if ok})
    return feats[finite], [g for g, ok in zip(good, finite) if ok], bad


def describe_bad_clip(reason: str, item: Item, *, advice: bool = True) -> str:
    """An audio error for a data set item: the reason, where the item was declared, and what to do."""
    where = f" ({item.where})" if item.where and item.where != str(item.path) else ""
    return f"{reason}{where}" + ("; fix or remove it, or pass --skip-bad" if advice else "")


class PatchDataset(Dataset):
    """Patches of a FeatureSet: item k is (patch (channels, rows, patch_frames), label, clip index).

    Supports batched fetching (``__getitems__``), so a DataLoader with
    ``collate_fn=collate_batch`` slices a whole batch at once.

    augment: optional ``f(patches, labels) -> (patches, labels)`` applied to each
    batch of patches cut from the (cached) features: the hook for spectrogram
    augmentations such as time roll, SpecAugment masking or mixup (labels may
    become soft, shape (batch, n_classes)).
    """

    def __init__(self, features: FeatureSet, *, patch_frames: int, hop_frames: int,
                 augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None):
        # (clips, n_patches, channels, rows, patch_frames), a view of the features cut by the same code as inference
        self.patches = patch_view(features.features, patch_frames=patch_frames, hop_frames=hop_frames).transpose(1, 2)
        self.labels = features.labels
        self.augment = augment
        self.per_clip = self.patches.shape[1]

    def __len__(self) -> int:
        return int(self.patches.shape[0] * self.per_clip)

    def __getitem__(self, k: int):
        return self.__getitems__([k])

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.patches.device)
        clips, which = idx // self.per_clip, idx % self.per_clip
        patches = self.patches[clips, which]
        labels = self.labels[clips]
        if self.augment is not None:
            patches, labels = self.augment(patches, labels)
        return patches, labels, clips


def collate_batch(batch):
    """The DataLoader collate function for PatchDataset: the batch is already stacked."""
    return batch

