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

Registered here: ``paper_cnn`` (the paper's CNN), ``rf_resnet`` (a receptive-field-regularised
residual CNN after CP-ResNet) and ``mobile`` (a MobileNetV2-style network within the DCASE 2022+
task 1 complexity budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..config import Config, FeatureConfig
from ..errors import ConfigError
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


def _check_param(ok: bool, key: str, rule: str) -> None:
    """Raise ConfigError ``invalid model.params.KEY: RULE`` unless ok (the builders' range checks)."""
    if not ok:
        raise ConfigError(f"invalid model.params.{key}: {rule}")


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
    _check_param(len(widths) == 3 and all(1 <= w <= 1024 for w in widths), "widths",
                 "must be three integers in 1..1024")
    _check_param(0.0 <= params["dropout"] < 1.0, "dropout", "must be in [0, 1)")
    return PaperCNN(in_channels=in_channels, n_classes=n_classes, widths=tuple(widths), dropout=params["dropout"])


def conv_bn(in_channels: int, out_channels: int, *, kernel: tuple[int, int] = (3, 3), stride: int = 1,
            groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv2d without bias ("same" padding for odd kernels) -> BN [-> ReLU].

    ``(batch, in_channels, rows, frames)`` -> ``(batch, out_channels, ceil(rows / stride), ceil(frames / stride))``.
    """
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size=kernel, stride=stride,
                        padding=(kernel[0] // 2, kernel[1] // 2), groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _pair(value) -> tuple[int, int]:
    return (value[0], value[1]) if isinstance(value, (tuple, list)) else (value, value)


def chain_receptive_field(net: nn.Module) -> tuple[int, int]:
    """Receptive field ``(rows, frames)`` of a network whose convolutions and poolings run one after the
    other in the order they are registered (skip connections may hold only 1x1 stride-1 convolutions).

    Walks Conv2d, MaxPool2d and AvgPool2d modules: each adds ``(kernel - 1) * jump`` input pixels per axis
    and multiplies the jump by its stride.
    """
    field, jump = [1, 1], [1, 1]
    for module in net.modules():
        if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        dilation = _pair(getattr(module, "dilation", 1))
        for axis in (0, 1):
            field[axis] += (kernel[axis] - 1) * dilation[axis] * jump[axis]
            jump[axis] *= stride[axis]
    return field[0], field[1]


class ResidualBlock(nn.Module):
    """conv (kernels[0]) -> BN -> ReLU -> conv (kernels[1]) -> BN, plus the input (through a 1x1 conv + BN
    when the channels change), -> ReLU.  ``(batch, in_channels, r, f)`` -> ``(batch, out_channels, r, f)``."""

    def __init__(self, in_channels: int, out_channels: int, *, kernels: tuple[tuple[int, int], tuple[int, int]]):
        super().__init__()
        self.body = nn.Sequential(conv_bn(in_channels, out_channels, kernel=kernels[0]),
                                  conv_bn(out_channels, out_channels, kernel=kernels[1], relu=False))
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else conv_bn(in_channels, out_channels, kernel=(1, 1), relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


RF_RESNET_CONVS = 12  # three stages of two residual blocks of two convolutions
LIMITED_KERNELS = {"1x1": (1, 1), "1x3": (1, 3)}


def rf_resnet_kernels(*, rho: int, limited_kernel: str = "1x1") -> list[tuple[int, int]]:
    """Kernels ``(rows, frames)`` of rf_resnet's 12 block convolutions, in order: the first ``rho`` are 3x3,
    the others ``limited_kernel`` (1x1 as CP-ResNet, or 1x3: one row by three frames)."""
    return [(3, 3) if i < rho else LIMITED_KERNELS[limited_kernel] for i in range(RF_RESNET_CONVS)]


class RFResNet(nn.Module):
    """A receptive-field-regularised residual CNN in the style of CP-ResNet (Koutini et al., DCASE 2019).

    Layout (``width`` = w; rows x frames for a 40 x 100 patch)::

        stem   3x3 conv (w) -> BN -> ReLU                     40 x 100
        pool 2x2, stage 1: 2 residual blocks, w channels        20 x 50
        pool 2x2, stage 2: 2 residual blocks, 2w channels       10 x 25
        pool 2x2, stage 3: 2 residual blocks, 4w channels        5 x 12
        global average pooling -> dropout -> linear (n_classes)

    Each residual block is conv -> BN -> ReLU -> conv -> BN + shortcut -> ReLU (the shortcut is a 1x1
    conv + BN where the channels double).  The receptive field is limited as CP-ResNet's ``rho`` does:
    of the 12 block convolutions, in order, the first ``rho`` are 3x3 and the later ones
    ``limited_kernel`` — "1x1" (CP-ResNet: neither axis grows) or "1x3" (one row by three frames:
    the frequency field stops growing, the time field keeps growing).  The frequency receptive field in
    mel rows (stem 3, the pools +1, +2, +4 rows; a 3x3 conv adds 4, 8 or 16 rows in stage 1, 2 or 3) is

        rho:   0   1   2   3   4   5   6   7   8   9  10  11  12
        rows: 10  14  18  22  26  34  42  50  58  74  90 106 122

    so rho <= 5 keeps it narrower than the default 40 bands (default 4: 26 rows, about two thirds of
    the spectrum; tune rho by cross-validation, as CP-ResNet does); with "1x1" the time field is the
    same number of frames, with "1x3" it is 122 frames whatever rho.  :attr:`receptive_field` holds
    ``(rows, frames)`` for the built network.  Larger rho means a larger field, more 3x3 kernels and
    more compute.  Input ``(batch, in_channels, rows, frames)`` with rows, frames >= 8; output logits
    ``(batch, n_classes)``.
    """

    def __init__(self, *, in_channels: int, n_classes: int, width: int = 32, rho: int = 4,
                 limited_kernel: str = "1x1", dropout: float = 0.2):
        super().__init__()
        kernels = rf_resnet_kernels(rho=rho, limited_kernel=limited_kernel)
        self.stem = conv_bn(in_channels, width, kernel=(3, 3))
        stages, channels = [], width
        for stage in range(3):
            out = width * 2 ** stage
            blocks = [nn.MaxPool2d(2)]
            for block in range(2):
                first = 4 * stage + 2 * block
                blocks.append(ResidualBlock(channels, out, kernels=(kernels[first], kernels[first + 1])))
                channels = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, n_classes)
        self.receptive_field = chain_receptive_field(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(x))


@register_model("rf_resnet", params={"width": 32, "rho": 4, "limited_kernel": "1x1", "dropout": 0.2})
def _build_rf_resnet(params: dict, *, in_channels: int, n_classes: int) -> nn.Module:
    _check_param(4 <= params["width"] <= 512, "width", "must be an integer in 4..512")
    _check_param(0 <= params["rho"] <= RF_RESNET_CONVS, "rho", f"must be an integer in 0..{RF_RESNET_CONVS}")
    _check_param(params["limited_kernel"] in LIMITED_KERNELS, "limited_kernel",
                 f"must be one of {sorted(LIMITED_KERNELS)}")
    _check_param(0.0 <= params["dropout"] < 1.0, "dropout", "must be in [0, 1)")
    return RFResNet(in_channels=in_channels, n_classes=n_classes, width=params["width"], rho=params["rho"],
                    limited_kernel=params["limited_kernel"], dropout=params["dropout"])


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (x expansion) -> BN -> ReLU -> 3x3 depthwise (stride) -> BN -> ReLU ->
    1x1 project -> BN, plus the input when stride is 1 and the channels match (no ReLU after the sum).

    ``(batch, in_channels, r, f)`` -> ``(batch, out_channels, ceil(r / stride), ceil(f / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers = [conv_bn(in_channels, hidden, kernel=(1, 1))] if expansion > 1 else []
        layers += [conv_bn(hidden, hidden, kernel=(3, 3), stride=stride, groups=hidden),
                   conv_bn(hidden, out_channels, kernel=(1, 1), relu=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


# (output channels at width 1, blocks, stride of the first block) per stage, after a 3x3 stride-2 stem
MOBILE_STAGES = ((24, 1, 1), (24, 2, 2), (48, 2, 2), (56, 2, 2))
MOBILE_STEM, MOBILE_HEAD = 24, 128


def _scaled(channels: int, width: float) -> int:
    """Channels times the width multiplier, rounded to a multiple of 4 (at least 4)."""
    return max(4, int(round(channels * width / 4)) * 4)


class MobileNet(nn.Module):
    """A low-complexity MobileNetV2-style network (DCASE 2022+ task 1 budget: <= 128 K parameters and
    <= 30 M MACs per second of audio at the defaults; see :mod:`soundscene.training.complexity`).

    Layout (channels at ``width`` 1; rows x frames for a 40 x 100 patch)::

        stem   3x3 conv stride 2 (24) -> BN -> ReLU                   20 x 50
        stage 1: 1 inverted residual block, 24 channels                 20 x 50
        stage 2: 2 blocks, 24 channels, the first with stride 2         10 x 25
        stage 3: 2 blocks, 48 channels, stride 2                          5 x 13
        stage 4: 2 blocks, 56 channels, stride 2                          3 x 7
        1x1 conv (128) -> BN -> ReLU -> global average pooling -> dropout -> linear (n_classes)

    Every block expands by ``expansion``; channels are multiplied by ``width`` and rounded to a
    multiple of 4.  At the defaults and 10 classes: 106,658 parameters, 13.98 M MACs per 1-s patch,
    27.95 M MACs per second of audio at 2 patches per second.  Input ``(batch, in_channels, rows, frames)`` with rows, frames >= 8; output logits
    ``(batch, n_classes)``.  :attr:`receptive_field` holds ``(rows, frames)``.
    """

    def __init__(self, *, in_channels: int, n_classes: int, width: float = 1.0, expansion: int = 4,
                 dropout: float = 0.2):
        super().__init__()
        channels = _scaled(MOBILE_STEM, width)
        layers = [conv_bn(in_channels, channels, kernel=(3, 3), stride=2)]
        for out, blocks, stride in MOBILE_STAGES:
            out = _scaled(out, width)
            for block in range(blocks):
                layers.append(InvertedResidual(channels, out, stride=stride if block == 0 else 1,
                                               expansion=expansion))
                channels = out
        head = _scaled(MOBILE_HEAD, width)
        layers.append(conv_bn(channels, head, kernel=(1, 1)))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head, n_classes)
        self.receptive_field = chain_receptive_field(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


@register_model("mobile", params={"width": 1.0, "expansion": 4, "dropout": 0.2})
def _build_mobile(params: dict, *, in_channels: int, n_classes: int) -> nn.Module:
    _check_param(0.25 <= params["width"] <= 4.0, "width", "must be in 0.25..4")
    _check_param(1 <= params["expansion"] <= 8, "expansion", "must be an integer in 1..8")
    _check_param(0.0 <= params["dropout"] < 1.0, "dropout", "must be in [0, 1)")
    return MobileNet(in_channels=in_channels, n_classes=n_classes, width=params["width"],
                     expansion=params["expansion"], dropout=params["dropout"])


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
