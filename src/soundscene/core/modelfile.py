"""The model file: one safetensors file that alone is enough to predict.

It holds the network's weights (including the feature normalisation) and, as
metadata, the full validated configuration, the ordered class names, the
package version, a SHA-256 digest of the weights and the content digests of
the files the model was trained and validated on (so that ``evaluate`` can
leave them out).  Nothing is pickled, so loading an untrusted file cannot run
code.  A file whose configuration or weights do not fit this version of the
code, whose weights do not match their digest, or whose weights are not
finite is refused with one clear line.  Format-1 files (written before the
digests existed) still load; their weights are checked to be finite.
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
from ..errors import ConfigError, ModelFileError
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
        try:
            return frozenset(json.loads(self.metadata.get("trained_on", "[]")))
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


def save_model_file(path: str | Path, net: SceneNet, config: Config, classes: list[str],
                    extra: dict[str, str] | None = None, trained_on: list[str] | None = None) -> Path:
    """Write weights + configuration + class names atomically. Returns the path.

    trained_on: content digests (:func:`soundscene.training.data.file_digest`) of the
    training and validation files, recorded so evaluation can leave them out.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "kind": FILE_KIND,
        "format": FILE_FORMAT,
        "soundscene_version": __version__,
        "config": config.to_json(),
        "classes": json.dumps(list(classes)),
        "weights_sha256": weights_digest(tensors),
        "trained_on": json.dumps(sorted(set(trained_on or []))),
        **(extra or {}),
    }
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
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ModelFileError(f"{path}: its weights do not fit the network its configuration describes "
                             f"({detail}); the file is damaged or was edited") from None
    net.eval().to(device)
    return ModelBundle(net, config, list(classes), dict(metadata), path)


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
