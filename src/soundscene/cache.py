"""A disk cache of features, built once per data set and configuration.

What is cached: the front end's output for whole clips (``(clips, channels,
rows, frames)`` float32), not the decoded audio.  A 10-s clip's log-mel
features (40 x 1001) take 160 kB against 880 kB for its 22,050-Hz waveform,
and reading them skips decoding, resampling *and* the STFT.  Whole-clip
features are also exactly what inference computes (the 80-dB floor is per
clip), so training patches cut from them match what a deployed model sees.
Spectrogram augmentations (time roll, masking, mixup) apply to patches cut
from the cache in the training loop (``augment`` hook of PatchDataset).

Layout: ``<cache_dir>/features-<key>/data.npy`` (a memory-mapped .npy) and
``meta.json``.  The key hashes the audio and feature configuration and each
file's path, size and modification time, so a changed configuration or file
gets a new cache.  A cache is built in a ``.partial`` folder and renamed into
place only when complete; ``meta.json`` records the data's size and CRC-32,
checked on every load, so a damaged or half-written cache is rebuilt, never
used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._io import atomic_write_json
from .audio import load_clip
from .config import Config
from .data import FeatureSet, Item, describe_bad_clip
from .errors import AudioError, DataError, warn
from .features import FrontEnd

CACHE_FORMAT = 1
CHUNK_CLIPS = 8


def default_cache_dir() -> Path:
    """``$SOUNDSCENE_CACHE``, else ``~/.cache/soundscene``."""
    env = os.environ.get("SOUNDSCENE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "soundscene"


def cache_key(paths: Sequence[Path], config: Config) -> str:
    """Hex key of (audio + feature configuration, each file's path, size and mtime)."""
    files = []
    for p in paths:
        try:
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([str(p), -1, -1])
    blob = json.dumps({"format": CACHE_FORMAT, "audio": config.to_dict()["audio"],
                       "features": config.to_dict()["features"], "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class FeatureStore:
    """A loaded cache: memory-mapped features for ``paths`` (row k is paths[k]) and unusable rows."""

    folder: Path
    paths: list[str]
    features: np.ndarray  # memmap, (clips, channels, rows, frames)
    bad: dict[int, str]

    def feature_set(self, items: Sequence[Item], classes: Sequence[str]) -> tuple[FeatureSet, list[tuple[Item, str]]]:
        """The rows of ``items`` copied into memory as a FeatureSet, and the (item, reason) of bad ones."""
        index = {p: k for k, p in enumerate(self.paths)}
        label_index = {c: k for k, c in enumerate(classes)}
        rows, kept, skipped = [], [], []
        for item in items:
            if item.label not in label_index:
                raise DataError(f"{item.where}: label '{item.label}' is not one of the classes {list(classes)}")
            k = index[str(item.path)]
            if k in self.bad:
                skipped.append((item, self.bad[k]))
            else:
                rows.append(k)
                kept.append(item)
        if not kept:
            raise DataError("no usable audio: every file was skipped")
        order = np.argsort(rows)  # read the memmap in file order, then restore the item order
        block = np.empty((len(rows), *self.features.shape[1:]), dtype=np.float32)
        block[order] = self.features[np.asarray(rows)[order]]
        labels = torch.tensor([label_index[i.label] for i in kept], dtype=torch.long)
        return FeatureSet(torch.from_numpy(block), labels, kept), skipped


def load_or_build(items: Sequence[Item], config: Config, *, cache_dir: str | Path | None = None,
                  workers: int = 1, skip_bad: bool = False, progress: bool = True) -> FeatureStore:
    """The feature cache for these items and configuration: loaded if valid, else built.

    workers: processes that decode, resample and compute features in parallel.
    skip_bad: record unreadable clips as bad rows instead of stopping (the
    error names the file and its manifest row).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    paths = sorted({str(i.path) for i in items})
    by_path = {str(i.path): i for i in items}
    key = cache_key([Path(p) for p in paths], config)
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
    keys = {"format", "paths", "file_bytes", "shape", "crc32", "bad"}
    if not isinstance(meta, dict) or not keys <= set(meta) or not isinstance(meta["bad"], dict):
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
    return FeatureStore(folder, paths, data, {int(k): v for k, v in meta["bad"].items()}), ""


def _build(folder: Path, paths: list[str], by_path: dict[str, Item], config: Config, *, workers: int,
           skip_bad: bool, progress: bool) -> FeatureStore:
    from tqdm.auto import tqdm

    front_end = FrontEnd(config.features, sample_rate=config.audio.sample_rate)
    clip = config.audio.clip_samples
    if clip is None:
        raise DataError("audio.clip_seconds must be fixed before features are cached")
    shape = (len(paths), config.audio.channels, config.features.n_rows, front_end.frames(clip))
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    data = np.lib.format.open_memmap(partial / "data.npy", mode="w+", dtype=np.float32, shape=shape)
    del data
    chunks = [list(range(i, min(i + CHUNK_CLIPS, len(paths)))) for i in range(0, len(paths), CHUNK_CLIPS)]
    bad: dict[int, str] = {}
    bar = tqdm(total=len(paths), desc=f"caching features ({workers} worker{'s' * (workers > 1)})", unit="clip",
               disable=not progress)
    try:
        if workers <= 1:
            for rows in chunks:
                bad.update(_fill(partial / "data.npy", [(k, paths[k]) for k in rows], config))
                bar.update(len(rows))
        else:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
                futures = {pool.submit(_fill, partial / "data.npy", [(k, paths[k]) for k in rows], config): rows
                           for rows in chunks}
                for future in as_completed(futures):
                    bad.update(future.result())
                    bar.update(len(futures[future]))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        bar.close()
    if bad and not skip_bad:
        shutil.rmtree(partial, ignore_errors=True)
        first = [describe_bad_clip(bad[k], by_path[paths[k]], advice=False) for k in sorted(bad)[:3]]
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise AudioError(f"{len(bad)} unusable clip(s): {'; '.join(first)}{more}; fix or remove them, "
                         "or pass --skip-bad")
    data = np.load(partial / "data.npy", mmap_mode="r")
    atomic_write_json(partial / "meta.json", {
        "format": CACHE_FORMAT, "paths": paths, "shape": list(shape), "bad": {str(k): v for k, v in bad.items()},
        "file_bytes": (partial / "data.npy").stat().st_size, "crc32": _crc32(data),
        "config": {"audio": config.to_dict()["audio"], "features": config.to_dict()["features"]},
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


def _fill(data_path: Path, rows: list[tuple[int, str]], config: Config) -> dict[int, str]:
    """Decode, resample and featurise some clips into rows of the memory-mapped array; returns bad rows."""
    front_end = FrontEnd(config.features, sample_rate=config.audio.sample_rate)
    data = np.load(data_path, mmap_mode="r+")
    bad, good, waves = {}, [], []
    for k, path in rows:
        try:
            waves.append(load_clip(path, config.audio))
            good.append(k)
        except AudioError as exc:
            bad[k] = str(exc)
    if good:
        feats = front_end(torch.from_numpy(np.stack(waves))).numpy()
        for k, f in zip(good, feats):
            data[k] = f
        data.flush()
    del data
    return bad


def _crc32(data: np.ndarray, block_rows: int = 256) -> int:
    crc = 0
    for i in range(0, data.shape[0], block_rows):
        crc = zlib.crc32(np.ascontiguousarray(data[i:i + block_rows]).view(np.uint8), crc)
    return crc
