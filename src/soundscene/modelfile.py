"""The model file: one safetensors file that alone is enough to predict.

It holds the network's weights (including the feature normalisation) and, as
metadata, the full validated configuration, the ordered class names and the
package version.  Nothing is pickled, so loading an untrusted file cannot run
code.  A file whose configuration or weights do not fit this version of the
code is refused with one clear line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._io import atomic_write
from ._version import __version__
from .config import Config
from .errors import ConfigError, ModelFileError
from .models import SceneNet, build_model

FILE_KIND = "soundscene-model"
FILE_FORMAT = "1"


@dataclass
class ModelBundle:
    """A network ready to predict (eval mode), with its configuration and class names."""

    net: SceneNet
    config: Config
    classes: list[str]
    metadata: dict[str, str]


def save_model_file(path: str | Path, net: SceneNet, config: Config, classes: list[str],
                    extra: dict[str, str] | None = None) -> Path:
    """Write weights + configuration + class names to ``path`` atomically. Returns the path."""
    metadata = {
        "kind": FILE_KIND,
        "format": FILE_FORMAT,
        "soundscene_version": __version__,
        "config": config.to_json(),
        "classes": json.dumps(list(classes)),
        **(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_model_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a model file, checked to be a soundscene model of a known format."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({exc}); "
                             "pass a model.safetensors written by soundscene") from None
    if metadata.get("kind") != FILE_KIND:
        raise ModelFileError(f"{path}: is a safetensors file but not a soundscene model (no soundscene metadata)")
    if metadata.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{path}: model file format {metadata.get('format')} is not supported by "
                             f"soundscene {__version__} (expects {FILE_FORMAT}); upgrade or re-train")
    return metadata


def load_model_file(path: str | Path, *, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the network from a model file alone; returns it in eval mode on ``device``."""
    path = Path(path)
    metadata = read_model_metadata(path)
    try:
        config = Config.from_json(metadata["config"])
        classes = json.loads(metadata["classes"])
    except (ConfigError, KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: its stored configuration does not fit this version of soundscene "
                             f"({exc}); re-train the model or use the version that wrote it") from None
    if config.audio.clip_seconds is None:
        raise ModelFileError(f"{path}: stored configuration has no clip length; the file is incomplete")
    net = build_model(config.model, in_channels=config.audio.channels, n_rows=config.features.n_rows,
                      n_classes=len(classes))
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ModelFileError(f"{path}: its weights do not fit the network its configuration describes "
                             f"({detail}); the file is damaged or was edited") from None
    net.eval().to(device)
    return ModelBundle(net, config, list(classes), dict(metadata))
