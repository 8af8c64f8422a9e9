"""A disk cache of features, built once per data set and configuration.

What is cached: the front end's output for whole clips (``(clips, channels,
rows, frames)`` float32), not the decoded audio.  A 10-s clip's log-mel
features (40 x 1001) take 160 kB against 880 kB for its 22,050-Hz waveform,
and reading them skips decoding, resampling *and* the STFT.  Whole-clip
features are also exactly what inference computes (the 80-dB floor is per
clip), so training patches cut from them match what a deployed model sees.
Spectrogram augmentations (time roll, masking, mixup) apply to patches cut
from the cache in the training loop (``augment`` hook of PatchDataset).

:func:`feature_sets` is the one function that turns the splits of a data set
into features, through the cache or, with ``use_cache=False``, in memory;
both run the same :func:`soundscene.training.data.featurize`.

Layout: ``<cache_dir>/features-<key>/data.npy`` (a memory-mapped .npy) and
``meta.json``.  The key hashes the audio and feature configuration, each
file's path, size and modification time (and the data set's own minimum length
where it overrides ``audio.min_seconds``: UrbanSound8K), and the versions of soundscene and
of every library that shapes features (numpy, scipy, torch, soundfile and
libsndfile, soxr, librosa), so a changed configuration, file, front end or
library gets a new cache.  A cache is built in a ``.partial`` folder and renamed into
place only when complete; ``meta.json`` records the data's size and CRC-32,
checked on every load, so a damaged or half-written cache is rebuilt, never
used.  It also records the :func:`~soundscene.training.data.audio_digest` of
each decoded clip (computed while the clip is decoded for its features, never
decoding twice), by which evaluation recognises re-encoded copies of the clips
a model learnt from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._io import atomic_write_json
from ..config import Config
from .._version import __version__
from .data import FeatureSet, Item, describe_bad_clip, featurize
from ..errors import AudioError, DataError, warn
from ..core.features import FrontEnd

CACHE_FORMAT = 3  # 3: audio digests in meta.json
CHUNK_CLIPS = 8


def default_cache_dir() -> Path:
    """``$SOUNDSCENE_CACHE``, else ``~/.cache/soundscene``."""
    env = os.environ.get("SOUNDSCENE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "soundscene"


def code_versions() -> dict[str, str]:
    """Versions of soundscene and of the libraries that shape features (part of the cache key)."""
    import importlib.metadata

    import scipy
    import soundfile
    import soxr

    versions = {"soundscene": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
                "torch": torch.__version__, "soundfile": soundfile.__version__,
                "libsndfile": soundfile.__libsndfile_version__, "soxr": soxr.__version__}
    try:
        versions["librosa"] = importlib.metadata.version("librosa")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - librosa is a dependency
        versions["librosa"] = "absent"
    return versions


def cache_key(paths: Sequence[Path], config: Config, min_seconds: dict[str, float] | None = None) -> str:
    """Hex key of (audio + feature configuration, code versions, each file's path, size and mtime, and
    {path: the data set's own minimum length} where it overrides audio.min_seconds)."""
    files = []
    for p in paths:
        try:
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([str(p), -1, -1])
    key = {"format": CACHE_FORMAT, "audio": config.to_dict()["audio"], "features": config.to_dict()["features"],
           "code": code_versions(), "files": files}
    if min_seconds:
        key["min_seconds"] = {str(p): float(s) for p, s in min_seconds.items()}
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class FeatureStore:
    """A loaded cache: memory-mapped features for ``paths`` (row k is paths[k]), unusable rows, and the
    audio digest of each usable row."""

    folder: Path | None  # None: computed in memory
    paths: list[str]
    features: np.ndarray  # memmap or array, (clips, channels, rows, frames)
    bad: dict[int, str]
    audio_digests: dict[int, str] = field(default_factory=dict)

    def feature_set(self, items: Sequence[Item], classes: Sequence[str]) -> tuple[FeatureSet, list[tuple[Item, str]]]:
        """The rows of ``items`` copied into memory as a FeatureSet (each item with its ``audio_digest``), and
        the (item, reason naming its manifest row) of bad ones."""
        index = {p: k for k, p in enumerate(self.paths)}
        label_index = {c: k for k, c in enumerate(classes)}
        rows, kept, skipped = [], [], []
        for item in items:
            if item.label not in label_index:
                raise DataError(f"{item.where}: label '{item.label}' is not one of the classes {list(classes)}")
            k = index[str(item.path)]
            if k in self.bad:
                skipped.append((item, describe_bad_clip(self.bad[k], item, advice=False)))
            else:
                rows.append(k)
                kept.append(replace(item, audio_digest=self.audio_digests.get(k, item.audio_digest)))
        if not kept:
            raise DataError("no usable audio: every file was skipped")
        order = np.argsort(rows)  # read the memmap in file order, then restore the item order
        block = np.empty((len(rows), *self.features.shape[1:]), dtype=np.float32)
        block[order] = self.features[np.asarray(rows)[order]]
        labels = torch.tensor([label_index[i.label] for i in kept], dtype=torch.long)
        return FeatureSet(torch.from_numpy(block), labels, kept), skipped


def feature_sets(splits: dict[str, Sequence[Item]], config: Config, classes: Sequence[str], *,
                 use_cache: bool = True, cache_dir: str | Path | None = None, workers: int = 1,
                 skip_bad: bool = False, progress: bool = True) -> tuple[dict[str, FeatureSet], list[tuple[Item, str]]]:
    """Features of each split: from the disk cache (built once), or computed in memory with ``use_cache=False``.

    Returns ({split name: FeatureSet}, [(item, reason) of every clip left out]).  Without skip_bad an
    unusable clip stops with an AudioError naming it and its manifest row.
    """
    items = [i for part in splits.values() for i in part]
    if use_cache:
        store = load_or_build(items, config, cache_dir=cache_dir, workers=workers, skip_bad=skip_bad,
                              progress=progress)
    else:
        store = _build(None, *_paths(items), config, workers=1, skip_bad=skip_bad, progress=progress)
    sets, skipped = {}, []
    for name, part in splits.items():
        sets[name], bad = store.feature_set(part, classes)
        skipped += bad
    return sets, skipped


def _paths(items: Sequence[Item]) -> tuple[list[str], dict[str, Item]]:
    return sorted({str(i.path) for i in items}), {str(i.path): i for i in items}


def _min_seconds(by_path: dict[str, Item]) -> dict[str, float]:
    """{path: the data set's own minimum length} for the files whose data set overrides audio.min_seconds."""
    return {p: i.min_seconds for p, i in by_path.items() if i.min_seconds is not None}


def load_or_build(items: Sequence[Item], config: Config, *, cache_dir: str | Path | None = None,
                  workers: int = 1, skip_bad: bool = False, progress: bool = True) -> FeatureStore:
    """The feature cache for these items and configuration: loaded if valid, else built.

    workers: processes that decode, resample and compute features in parallel.
    skip_bad: record unreadable clips as bad rows instead of stopping (the
    error names the file and its manifest row).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    paths, by_path = _paths(items)
    key = cache_key([Path(p) for p in paths], config, _min_seconds(by_path))
    folder = cache_dir / f"features-{key}"
    if folder.exists():
        store, problem = _open(folder, paths)
        if store is not None and (skip_bad or not store.bad):
            return store
        if store is not None:  # built earlier with --skip-bad; now bad clips must stop the run
            k, reason = next(iter(store.bad.items()))
            raise AudioError(describe_bad_clip(reason, by_path[paths[k]]))
        warn(f"feature cache {folder} is unusable ({problem}); rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
    return _build(folder, paths, by_path, config, workers=workers, skip_bad=skip_bad, progress=progress)


def _open(folder: Path, paths: list[str]) -> tuple[FeatureStore | None, str]:
    meta_path, data_path = folder / "meta.json", folder / "data.npy"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "meta.json is missing or damaged"
    keys = {"format", "paths", "file_bytes", "shape", "crc32", "bad", "audio_digests"}
    if (not isinstance(meta, dict) or not keys <= set(meta) or not isinstance(meta["bad"], dict)
            or not isinstance(meta["audio_digests"], dict)):
        return None, "meta.json is incomplete"
    if meta.get("format") != CACHE_FORMAT or meta.get("paths") != paths:
        return None, "it was written for other files or by another version"
    if not data_path.is_file() or data_path.stat().st_size != meta.get("file_bytes"):
        return None, "data.npy is missing or has the wrong size"
    try:
        data = np.load(data_path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        return None, f"data.npy cannot be read ({exc})"
    if list(data.shape) != meta["shape"] or _crc32(data) != meta["crc32"]:
        return None, "data.npy does not match its checksum"
    return FeatureStore(folder, paths, data, {int(k): v for k, v in meta["bad"].items()},
                        {int(k): v for k, v in meta["audio_digests"].items()}), ""


def _build(folder: Path | None, paths: list[str], by_path: dict[str, Item], config: Config, *, workers: int,
           skip_bad: bool, progress: bool) -> FeatureStore:
    """Featurise every path into ``folder`` (a cache; built in a .partial folder, then renamed) or,
    with folder None, into memory."""
    from tqdm.auto import tqdm

    clip = config.audio.clip_samples
    if clip is None:
        raise DataError("audio.clip_seconds must be fixed before features are computed")
    shape = (len(paths), config.audio.channels, config.features.n_rows, FrontEnd.from_config(config).frames(clip))
    chunks = [list(range(i, min(i + CHUNK_CLIPS, len(paths)))) for i in range(0, len(paths), CHUNK_CLIPS)]
    bad: dict[int, str] = {}
    digests: dict[int, str] = {}
    shortest = [by_path[p].min_seconds for p in paths]
    if folder is None:
        target = np.empty(shape, dtype=np.float32)
    else:
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        target = partial / "data.npy"
        np.lib.format.open_memmap(target, mode="w+", dtype=np.float32, shape=shape).flush()
    desc = "computing features" if folder is None else f"caching features ({workers} worker{'s' * (workers > 1)})"
    bar = tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress)
    try:
        if workers <= 1 or folder is None:
            for rows in chunks:
                _merge(_fill(target, [(k, paths[k], shortest[k]) for k in rows], config), bad, digests)
                bar.update(len(rows))
        else:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
                futures = {pool.submit(_fill, target, [(k, paths[k], shortest[k]) for k in rows], config): rows
                           for rows in chunks}
                for future in as_completed(futures):
                    _merge(future.result(), bad, digests)
                    bar.update(len(futures[future]))
    except BaseException:
        if folder is not None:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        bar.close()
    if bad and not skip_bad:
        if folder is not None:
            shutil.rmtree(partial, ignore_errors=True)
        first = [describe_bad_clip(bad[k], by_path[paths[k]], advice=False) for k in sorted(bad)[:3]]
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise AudioError(f"{len(bad)} unusable clip(s): {'; '.join(first)}{more}; fix or remove them, "
                         "or pass --skip-bad")
    if folder is None:
        return FeatureStore(None, paths, target, bad, digests)
    data = np.load(partial / "data.npy", mmap_mode="r")
    atomic_write_json(partial / "meta.json", {
        "format": CACHE_FORMAT, "paths": paths, "shape": list(shape), "bad": {str(k): v for k, v in bad.items()},
        "audio_digests": {str(k): v for k, v in sorted(digests.items())},
        "file_bytes": (partial / "data.npy").stat().st_size, "crc32": _crc32(data),
        "config": {"audio": config.to_dict()["audio"], "features": config.to_dict()["features"]},
        "code": code_versions(),
    })
    del data
    try:
        os.replace(partial, folder)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(partial, ignore_errors=True)
    store, problem = _open(folder, paths)
    if store is None:
        raise DataError(f"feature cache {folder} could not be written ({problem})")
    return store


def _worker_init() -> None:
    torch.set_num_threads(1)


def _fill(target: Path | np.ndarray, rows: list[tuple[int, str, float | None]],
          config: Config) -> tuple[dict[int, str], dict[int, str]]:
    """Featurise some clips (row, path, the data set's own minimum length or None) into rows of ``target``
    (an array, or a memory-mapped .npy by path, from a worker process); returns ({row: reason} of the bad
    rows, {row: audio digest} of the good ones)."""
    digests: dict[int, str] = {}
    feats, good, bad = featurize([p for _, p, _ in rows], config, FrontEnd.from_config(config),
                                 min_seconds=[s for _, _, s in rows], digests=digests)
    data = np.load(target, mmap_mode="r+") if isinstance(target, Path) else target
    for j, f in zip(good, feats):
        data[rows[j][0]] = f
    if isinstance(target, Path):
        data.flush()
    del data
    return ({rows[j][0]: reason for j, reason in bad.items()}, {rows[j][0]: d for j, d in digests.items()})


def _merge(result: tuple[dict[int, str], dict[int, str]], bad: dict[int, str], digests: dict[int, str]) -> None:
    bad.update(result[0])
    digests.update(result[1])


def _crc32(data: np.ndarray, block_rows: int = 256) -> int:
    crc = 0
    for i in range(0, data.shape[0], block_rows):
        crc = zlib.crc32(np.ascontiguousarray(data[i:i + block_rows]).view(np.uint8), crc)
    return crc
