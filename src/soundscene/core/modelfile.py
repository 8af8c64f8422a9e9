"""The model file: one safetensors file that alone is enough to predict.

It holds the network's weights (including the feature normalisation) and, as
metadata, the full validated configuration, the ordered class names, the
package version, a SHA-256 digest of the weights, the content digests of
the files the model was trained and validated on and the digests of their
decoded audio (so that ``evaluate`` can leave them out, re-encoded copies
too), and a SHA-256 digest of the metadata itself (every entry but the
digests).  Nothing is pickled, so loading an untrusted file cannot run
code.  A file whose configuration or weights do not fit this version of the
code, whose weights or metadata do not match their digest, whose class names
are empty or repeated, or whose weights are not finite is refused with one
clear line.  Format-1 files (written before the digests existed) still load,
with one warning that they cannot be verified; their weights are checked to
be finite and to hold no tensor zeroed whole (a tell-tale of damage).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._io import atomic_write
from .._version import __version__
from ..config import MAX_CLASSES, Config
from ..errors import ConfigError, ModelFileError, warn
from .models import SceneNet, build_model

FILE_KIND = "soundscene-model"
MODEL_FILE_NAME = "model.safetensors"  # the name a run folder gives its model file
RUN_MARKER = "config.json"  # a folder holding this is a run (see soundscene.training.runs)
FILE_FORMAT = "2"
READABLE_FORMATS = ("1", "2")


@dataclass
class ModelBundle:
    """A network ready to predict (eval mode), with its configuration and class names."""

    net: SceneNet
    config: Config
    classes: list[str]
    metadata: dict[str, str]
    path: Path | None = None

    @property
    def trained_on(self) -> frozenset[str]:
        """Content digests of the files the model was trained or validated on (empty for format-1 files)."""
        return _digest_set(self.metadata.get("trained_on"))

    @property
    def trained_on_audio(self) -> frozenset[str]:
        """Digests of the decoded audio (:func:`soundscene.training.data.audio_digest`) of the clips the model
        was trained or validated on (empty for files written before they were recorded)."""
        return _digest_set(self.metadata.get("trained_on_audio"))


def _digest_set(text: str | None) -> frozenset[str]:
    try:
        values = json.loads(text or "[]")
        return frozenset(v for v in values if isinstance(v, str))
    except (ValueError, TypeError):
        return frozenset()


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def metadata_digest(metadata: dict[str, str]) -> str:
    """SHA-256 over the canonical JSON (sorted keys, no spaces) of every metadata entry but the digests
    (``*_sha256``): configuration, classes, the digests of the training files, version, selection..."""
    covered = {k: v for k, v in metadata.items() if not k.endswith("_sha256")}
    return hashlib.sha256(json.dumps(covered, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def class_names_problem(classes) -> str | None:
    """Why a list of class names cannot be a model's (not a list of strings, empty or repeated names), or None."""
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "the class names are not a non-empty list of strings"
    empty = [k for k, c in enumerate(classes) if not c.strip()]
    if empty:
        return f"class name number {empty[0] + 1} is empty"
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        return f"class name(s) {repeated} are repeated"
    return None


def save_model_file(path: str | Path, net: SceneNet, config: Config, classes: list[str],
                    extra: dict[str, str] | None = None, trained_on: list[str] | None = None,
                    trained_on_audio: list[str] | None = None) -> Path:
    """Write weights + configuration + class names atomically. Returns the path.

    trained_on: content digests (:func:`soundscene.training.data.file_digest`) of the
    training and validation files, and trained_on_audio: digests of their decoded clips
    (:func:`soundscene.training.data.audio_digest`), recorded so evaluation can leave them out.
    Raises ModelFileError for empty or repeated class names.
    """
    problem = class_names_problem(list(classes))
    if problem:
        raise ModelFileError(f"{path}: cannot write a model whose {problem}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "kind": FILE_KIND,
        "format": FILE_FORMAT,
        "soundscene_version": __version__,
        "config": config.to_json(),
        "classes": json.dumps(list(classes)),
        "weights_sha256": weights_digest(tensors),
        "trained_on": json.dumps(sorted(set(trained_on or []))),
        "trained_on_audio": json.dumps(sorted(set(trained_on_audio or []))),
        **(extra or {}),
    }
    metadata["metadata_sha256"] = metadata_digest(metadata)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_model_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a model file, checked to be a soundscene model of a known format."""
    path = model_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({exc}); "
                             "pass a model.safetensors written by soundscene") from None
    if metadata.get("kind") != FILE_KIND:
        raise ModelFileError(f"{path}: is a safetensors file but not a soundscene model (no soundscene metadata)")
    if metadata.get("format") not in READABLE_FORMATS:
        raise ModelFileError(f"{path}: model file format {metadata.get('format')} is not supported by "
                             f"soundscene {__version__} (reads {', '.join(READABLE_FORMATS)}); upgrade or re-train")
    return metadata


def load_model_file(path: str | Path, *, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the network from a model file (or a run folder's) alone; returns it in eval mode on ``device``."""
    path = model_path(path)
    metadata = read_model_metadata(path)
    try:
        config = Config.from_json(metadata["config"])
        classes = json.loads(metadata["classes"])
        if isinstance(classes, list) and len(classes) > MAX_CLASSES:
            raise ConfigError(f"invalid classes: {len(classes)} names, more than the {MAX_CLASSES} a model may have")
        net = build_model(config, n_classes=len(classes))
    except (ConfigError, KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:  # absurd values too
        raise ModelFileError(f"{path}: its stored configuration does not fit this version of soundscene "
                             f"({exc}); re-train the model or use the version that wrote it") from None
    if config.audio.clip_seconds is None:
        raise ModelFileError(f"{path}: stored configuration has no clip length; the file is incomplete")
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: its weights cannot be read ({exc}); the file is damaged") from None
    expected = metadata.get("weights_sha256")
    if expected is not None and weights_digest(state) != expected:
        raise ModelFileError(f"{path}: its weights do not match the digest stored with them; the file is damaged "
                             "(copy it again or re-train)")
    if any(t.is_floating_point() and not torch.isfinite(t).all() for t in state.values()):
        raise ModelFileError(f"{path}: its weights hold NaN or infinite values; the file is damaged")
    if expected is None:
        zeroed = sorted(k for k, t in state.items() if t.is_floating_point() and t.numel() and not t.any())
        if zeroed:
            raise ModelFileError(f"{path}: weights tensor {zeroed[0]} is all zeros ({len(zeroed)} such tensor(s)) "
                                 "and the file has no digest to vouch for it; the file is damaged")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ModelFileError(f"{path}: its weights do not fit the network its configuration describes "
                             f"({detail}); the file is damaged or was edited") from None
    _check_metadata(path, metadata, classes)
    net.eval().to(device)
    return ModelBundle(net, config, list(classes), dict(metadata), path)


def _check_metadata(path: Path, metadata: dict[str, str], classes) -> None:
    """Refuse (one line) repeated or empty class names and metadata that does not match its digest; warn (one
    line) when the file has no digest of its weights or of its metadata, so it cannot be verified."""
    problem = class_names_problem(classes)
    if problem:
        raise ModelFileError(f"{path}: its {problem}; the file is damaged or was edited")
    expected = metadata.get("metadata_sha256")
    if expected is not None and metadata_digest(metadata) != expected:
        raise ModelFileError(f"{path}: its configuration or class names do not match the digest stored with them; "
                             "the file was edited or is damaged (copy it again or re-train)")
    missing = [what for what, key in (("weights", "weights_sha256"), ("metadata", "metadata_sha256"))
               if key not in metadata]
    if missing:
        why = ("format 1, written before digests existed" if metadata.get("format") == "1"
               else "written by an earlier version, or the digest was removed")
        warn(f"{path}: cannot be verified: it has no digest of its {' or '.join(missing)} ({why}); "
             "it is used as it is")


def model_path(path: str | Path) -> Path:
    """The model file a path names: the file itself, or a run folder's ``model.safetensors``.

    Raises ModelFileError (one line) when there is none.
    """
    path = Path(path)
    if path.is_dir():
        if (path / MODEL_FILE_NAME).is_file():
            return path / MODEL_FILE_NAME
        if (path / RUN_MARKER).is_file():
            raise ModelFileError(f"{path}: the run has not written a model yet (no finished epoch); "
                                 f"continue it with soundscene train --resume {path}")
        raise ModelFileError(f"{path}: is a folder but neither a run folder nor holds {MODEL_FILE_NAME}")
    if not path.exists():
        raise ModelFileError(f"{path}: model file does not exist")
    return path
