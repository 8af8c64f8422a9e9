"""Networks, picked by name from a registry, and how patch outputs become clip outputs.

Add a network with::

    @register_model("my_net", params={"width": 32, "dropout": 0.5})
    def build_my_net(params: dict, *, in_channels: int, n_classes: int) -> nn.Module: ...

``params`` are the network's own parameters with their defaults; a
configuration's ``model.params`` overrides them, and keys the network does not
declare, or values of another type, are refused in one line naming
``model.params.KEY``.  The builder checks ranges (raise ConfigError) and
returns a module mapping patches ``(batch, in_channels, rows, frames)`` to
logits ``(batch, n_classes)``.  :class:`SceneNet` wraps it with the feature
normalisation learnt from the training data, so a saved network needs nothing
else to predict.  :func:`build_model` is the one place a network is built
from a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .config import Config, FeatureConfig
from .errors import ConfigError
from .features import cut_patches


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any]


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, params: Mapping[str, Any] | None = None):
    """Decorator: register ``builder(params, *, in_channels, n_classes) -> nn.Module`` under ``name``.

    params: the network's parameters and their defaults (JSON values).
    """
    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is already registered")
        _REGISTRY[name] = _Entry(builder, dict(params or {}))
        return builder
    return decorate


def available_models() -> list[str]:
    """Names accepted by ``model.name``."""
    return sorted(_REGISTRY)


def model_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The network's defaults overridden by ``params``, checked: unknown keys and wrong types raise ConfigError."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; available: {', '.join(available_models())}")
    defaults = _REGISTRY[name].defaults
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'model.params.{k}' for k in unknown]} for model '{name}'; "
                          f"it takes {sorted(defaults)}")
    merged = dict(defaults)
    for key, value in params.items():
        default = defaults[key]
        if isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, tuple)) and all(_same_kind(v, default[0]) for v in value) if default \
                else isinstance(value, (list, tuple))
        else:
            ok = _same_kind(value, default)
        if not ok:
            raise ConfigError(f"invalid model.params.{key}: expected a value like {default!r}, got {value!r}")
        merged[key] = list(value) if isinstance(value, (list, tuple)) else value
    return merged


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def check_model_config(config: Config) -> None:
    """Refuse, in one line, a configuration whose network cannot be built (before any work is done)."""
    build_model(config, n_classes=2)


class ConvStage(nn.Module):
    """3x3 conv -> BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 2x2 max-pool (halves rows and frames)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class PaperCNN(nn.Module):
    """The paper's CNN: three stages of 3x3 and 1x1 convolutions with 32, 64 and 128 filters,
    batch norm, ReLU and max-pooling; global average pooling; dropout 0.5; a linear layer.

    Input ``(batch, in_channels, rows, frames)`` with rows, frames >= 8; output logits
    ``(batch, n_classes)`` (softmax is applied by :meth:`SceneNet.predict_proba`).
    """

    def __init__(self, *, in_channels: int, n_classes: int, widths=(32, 64, 128), dropout: float = 0.5):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(ConvStage(in_channels, w1), ConvStage(w1, w2), ConvStage(w2, w3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(w3, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


@register_model("paper_cnn", params={"widths": [32, 64, 128], "dropout": 0.5})
def _build_paper_cnn(params: dict, *, in_channels: int, n_classes: int) -> nn.Module:
    widths = params["widths"]
    if len(widths) != 3 or not all(1 <= w <= 1024 for w in widths):
        raise ConfigError("invalid model.params.widths: must be three integers in 1..1024")
    if not 0.0 <= params["dropout"] < 1.0:
        raise ConfigError("invalid model.params.dropout: must be in [0, 1)")
    return PaperCNN(in_channels=in_channels, n_classes=n_classes, widths=tuple(widths), dropout=params["dropout"])


class SceneNet(nn.Module):
    """Feature normalisation (per channel and row, from the training data) + a registered network.

    forward: patches ``(batch, channels, rows, frames)`` -> logits ``(batch, n_classes)``.
    """

    def __init__(self, backbone: nn.Module, *, in_channels: int, n_rows: int):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("feature_mean", torch.zeros(in_channels, n_rows, 1))
        self.register_buffer("feature_std", torch.ones(in_channels, n_rows, 1))

    def set_normalisation(self, features: torch.Tensor) -> None:
        """Learn mean and std per channel and row from ``(clips, channels, rows, frames)`` features."""
        self.feature_mean.copy_(features.mean(dim=(0, 3)).unsqueeze(-1))
        self.feature_std.copy_(features.std(dim=(0, 3)).clamp_min(1e-3).unsqueeze(-1))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.backbone((patches - self.feature_mean) / self.feature_std)

    @torch.no_grad()
    def predict_proba(self, patches: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(batch, n_classes)`` for patches (eval mode is the caller's job)."""
        return torch.softmax(self(patches), dim=-1)


def build_model(config: Config, *, n_classes: int) -> SceneNet:
    """The network ``config.model.name`` with its ``config.model.params``, wrapped in a SceneNet whose input
    is the front end's output for ``config.audio.channels`` channels (the one place a network is built)."""
    params = model_params(config.model.name, config.model.params)
    if n_classes < 2:
        raise ConfigError("a classifier needs at least two classes")
    channels = config.audio.channels
    backbone = _REGISTRY[config.model.name].builder(params, in_channels=channels, n_classes=n_classes)
    return SceneNet(backbone, in_channels=channels, n_rows=config.features.n_rows)


def aggregate_patches(probabilities: torch.Tensor, how: str) -> torch.Tensor:
    """Combine patch probabilities ``(..., n_patches, n_classes)`` into clip probabilities
    ``(..., n_classes)`` that sum to 1.

    how: "mean" (average), "log_mean" (geometric mean, renormalised), "max"
    (per-class maximum, renormalised), "vote" (share of patches whose top class it is).
    """
    if how == "mean":
        return probabilities.mean(dim=-2)
    if how == "log_mean":
        out = torch.exp(torch.log(probabilities.clamp_min(1e-12)).mean(dim=-2))
    elif how == "max":
        out = probabilities.amax(dim=-2)
    elif how == "vote":
        winners = probabilities.argmax(dim=-1)
        out = nn.functional.one_hot(winners, probabilities.shape[-1]).to(probabilities.dtype).mean(dim=-2)
    else:
        raise ConfigError(f"unknown aggregation '{how}'")
    return out / out.sum(dim=-1, keepdim=True)


@torch.no_grad()
def clip_probabilities(net: SceneNet, patches: torch.Tensor, *, aggregate: str,
                       max_batch: int = 256) -> torch.Tensor:
    """Clip probabilities ``(clips, n_classes)`` from patches ``(clips, n_patches, channels, rows, frames)``.

    Patches are run through the network in chunks of at most max_batch; the
    network must be in eval mode.
    """
    clips, per_clip = patches.shape[:2]
    flat = patches.reshape(clips * per_clip, *patches.shape[2:])
    probs = torch.cat([net.predict_proba(flat[i:i + max_batch]) for i in range(0, flat.shape[0], max_batch)])
    return aggregate_patches(probs.reshape(clips, per_clip, -1), aggregate)


@torch.no_grad()
def predict_clips(net: SceneNet, features: torch.Tensor, *, features_config: FeatureConfig,
                  aggregate: str, clips_per_chunk: int = 16) -> torch.Tensor:
    """Clip probabilities ``(clips, n_classes)`` from whole-clip features ``(clips, channels, rows, frames)``.

    Cuts each clip into the configured patches, runs them on the network's
    device and aggregates.  The network must be in eval mode.  Results do not
    depend on how many clips are passed at once.
    """
    device = next(net.parameters()).device
    out = []
    for i in range(0, features.shape[0], clips_per_chunk):
        chunk = features[i:i + clips_per_chunk].to(device)
        patches = cut_patches(chunk, patch_frames=features_config.patch_frames,
                              hop_frames=features_config.patch_hop_frames).transpose(1, 2)
        out.append(clip_probabilities(net, patches, aggregate=aggregate).cpu())
    return torch.cat(out)
