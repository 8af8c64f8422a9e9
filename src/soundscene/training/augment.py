"""Augmentations of training batches: pure, vectorised functions on patches, and the Augmenter that chains them.

Every function takes patches ``(batch, ..., rows, frames)`` — in training ``(batch, channels, rows, frames)``
float log-mel dB values or MFCCs (+ deltas), not yet normalised (the network normalises) — and returns a new
tensor of the same shape, dtype and device; the input is never changed in place.  At zero strength (alpha 0,
max 0, p 0, masks 0) a function returns its input itself and draws no random numbers.

Randomness: each draw is made on the patches' device from ``generator`` (a ``torch.Generator`` on that device;
None: torch's default generator of that device), so a seeded generator reproduces a batch exactly.  Nothing loops
over the batch in Python and nothing reads a value back to the host (no ``.item()``, no data-dependent branch),
so on a GPU the work is queued without waiting for it.

* :func:`random_gain`   — a random level change: a constant dB offset (log-mel), or its effect on MFCC coefficient 0;
* :func:`time_roll`     — circular shift of each patch in time;
* :func:`freq_mixstyle` — Freq-MixStyle (Schmid et al., DCASE 2022): mix per-row statistics between patches;
* :func:`spec_mask`     — SpecAugment time or frequency masks, filled with each patch's mean;
* :func:`mixup`         — mix pairs of patches and their targets (:func:`mixup_params` gives its random draws).

:class:`Augmenter` applies the enabled ones in that order, configured by :class:`~soundscene.config.AugmentConfig`,
and always returns soft targets ``(batch, n_classes)`` float32.
"""

from __future__ import annotations

import math

import torch

from ..config import FEATURE_KINDS, AugmentConfig, Config

AXES = {-1: "time", -2: "frequency"}


def soft_targets(targets: torch.Tensor, *, n_classes: int | None = None) -> torch.Tensor:
    """Targets as class probabilities ``(batch, n_classes)``.

    ``targets`` are class indices ``(batch,)`` (integers; then ``n_classes`` is required and the result is
    one-hot float32) or already soft ``(batch, n_classes)`` floats (returned as they are, after a shape check).
    """
    if targets.ndim == 1 and not targets.is_floating_point():
        if n_classes is None:
            raise ValueError("class-index targets need n_classes")
        return torch.nn.functional.one_hot(targets, n_classes).to(torch.float32)
    if targets.ndim != 2 or not targets.is_floating_point():
        raise ValueError(f"targets must be class indices (batch,) or soft targets (batch, n_classes); "
                         f"got {tuple(targets.shape)} {targets.dtype}")
    if n_classes is not None and targets.shape[1] != n_classes:
        raise ValueError(f"soft targets have {targets.shape[1]} classes, expected {n_classes}")
    return targets


def mixup_params(batch: int, *, alpha: float, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draws of :func:`mixup`: ``(lam, perm)``.

    lam: ``(batch,)`` float32 weights of each patch itself, ``max(l, 1 - l)`` for l ~ Beta(alpha, alpha), so in
        [0.5, 1]: the original always dominates its partner (and a pair is not mixed twice with mirrored weights).
    perm: ``(batch,)`` int64, the partner of patch i is patch ``perm[i]`` (a random permutation of the batch;
        a patch may draw itself).
    Called with the same seeded generator as :func:`mixup`, it reproduces that call's draws.
    """
    lam = _beta(batch, alpha=alpha, device=device, generator=generator)
    lam = torch.maximum(lam, 1.0 - lam)
    perm = torch.randperm(batch, device=device, generator=generator)
    return lam, perm


def mixup(patches: torch.Tensor, targets: torch.Tensor, *, alpha: float, n_classes: int | None = None,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018): each patch mixed with a partner from the same batch, and its targets alike.

    ``patches[i] -> lam[i] * patches[i] + (1 - lam[i]) * patches[perm[i]]`` and the same for the soft targets,
    with ``(lam, perm)`` from :func:`mixup_params` (lam in [0.5, 1], see there).  Mixing dB values is mixing in
    the log domain, as is usual for spectrogram mixup.

    Args:
        patches: ``(batch, ..., rows, frames)`` floats.
        targets: class indices ``(batch,)`` (then ``n_classes`` is required) or soft targets ``(batch, n_classes)``.
        alpha: Beta(alpha, alpha) parameter; 0 turns mixup off (patches returned as they are, targets made soft).

    Returns:
        ``(patches, soft_targets)``: same shape and dtype as the input, and ``(batch, n_classes)`` floats that
        sum to 1 in every row (float32 from class indices, else the given targets' dtype).
    """
    soft = soft_targets(targets, n_classes=n_classes)
    if alpha <= 0:
        return patches, soft
    lam, perm = mixup_params(patches.shape[0], alpha=alpha, device=patches.device, generator=generator)
    return _mix(patches, perm, lam.to(patches.dtype)), _mix(soft, perm, lam.to(soft.dtype))


def time_roll(patches: torch.Tensor, *, max_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Roll each patch circularly along time (the last axis) by its own random shift in -max_frames..max_frames.

    ``out[i, ..., t] = patches[i, ..., (t - s[i]) mod frames]`` (``torch.roll`` by ``s[i]``), done for the whole
    batch by one gather.  Every row of a patch keeps its values, only their order changes.  max_frames 0: off.
    """
    if max_frames <= 0:
        return patches
    batch, frames = patches.shape[0], patches.shape[-1]
    shift = torch.randint(-max_frames, max_frames + 1, (batch,), device=patches.device, generator=generator)
    index = torch.remainder(torch.arange(frames, device=patches.device) - shift[:, None], frames)  # (batch, frames)
    index = index.view(batch, *([1] * (patches.ndim - 2)), frames).expand(patches.shape)
    return torch.gather(patches, -1, index)


def spec_mask(patches: torch.Tensor, *, masks: int, width: int, axis: int = -1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment masking (Park et al., 2019) along time (``axis=-1``) or frequency (``axis=-2``).

    Each patch gets ``masks`` masks; each covers a contiguous run of a random width 0..width (capped at the axis
    length) at a random position (uniform over the positions where it fits), across all other axes.  Masks may
    overlap.  Masked values are set to the mean of that patch (over all its values, as it enters this call), not to
    0: log-mel dB values have no natural zero, and 0 dB would be a loud band.  Everything else is untouched.
    masks 0: off.

    Returns:
        Tensor of the input's shape and dtype.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be -1 (time) or -2 (frequency), got {axis}")
    if masks <= 0 or width <= 0:
        return patches
    batch, length = patches.shape[0], patches.shape[axis]
    device = patches.device
    widths = torch.randint(0, min(width, length) + 1, (batch, masks), device=device, generator=generator)
    room = (length - widths + 1).to(torch.float32)
    starts = (torch.rand((batch, masks), device=device, generator=generator) * room).long()
    starts = torch.minimum(starts, length - widths)  # guards rand * room rounding up to room
    position = torch.arange(length, device=device)
    hit = ((position >= starts[..., None]) & (position < (starts + widths)[..., None])).any(dim=1)  # (batch, len)
    shape = [batch] + [1] * (patches.ndim - 1)
    shape[axis] = length
    fill = patches.mean(dim=tuple(range(1, patches.ndim)), keepdim=True)
    return torch.where(hit.view(shape), fill, patches)


def random_gain(patches: torch.Tensor, *, max_db: float, kind: str = "logmel", n_mels: int | None = None,
                n_mfcc: int | None = None, deltas: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A random level change of each patch by c ~ Uniform(-max_db, max_db) dB (one c per patch, all its channels).

    kind "logmel": a gain multiplies the power by 10**(c/10), so every dB value moves by c: ``patches + c``.
    kind "mfcc": the front end's orthonormal DCT-II maps the constant c over its ``n_mels`` bands to
        ``c * n_mels / sqrt(n_mels) = c * sqrt(n_mels)`` on coefficient 0 (row 0) and to 0 on every other
        coefficient; deltas of a constant are 0.  So only row 0 moves, by ``c * sqrt(n_mels)``.  ``n_mels`` and
        ``n_mfcc`` are required, and the rows must be ``n_mfcc`` (times 3 with ``deltas``), laid out as the front
        end emits them (MFCCs, then deltas, then delta-deltas).
    Both are exact for the front end's features as long as no band sits at the 1e-10 power floor (digital
    silence); the per-clip top_db floor moves with the gain.  max_db 0: off.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    if max_db <= 0:
        return patches
    batch, rows = patches.shape[0], patches.shape[-2]
    offset = (torch.rand((batch,), device=patches.device, generator=generator) * 2.0 - 1.0) * max_db
    offset = _per_sample(offset.to(patches.dtype), patches.ndim)
    if kind == "logmel":
        return patches + offset
    if n_mels is None or n_mfcc is None:
        raise ValueError("random_gain on MFCCs needs n_mels and n_mfcc")
    expected = n_mfcc * (3 if deltas else 1)
    if rows != expected:
        raise ValueError(f"MFCC patches have {rows} rows, expected {expected} "
                         f"(n_mfcc {n_mfcc}{', with deltas' if deltas else ''})")
    row_weight = torch.zeros(rows, 1, dtype=patches.dtype, device=patches.device)
    row_weight[0] = math.sqrt(n_mels)  # built on the device from a Python number: no host sync
    return patches + offset * row_weight


def freq_mixstyle(patches: torch.Tensor, *, p: float, alpha: float, eps: float = 1e-6,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Freq-MixStyle (Schmid et al., DCASE 2022; MixStyle of Zhou et al., 2021, per frequency row).

    With probability ``p`` for the whole batch (one draw per call, as the authors' code), each patch is normalised
    per row — mean and standard deviation (population, plus ``eps`` in the variance) over time and channels — and
    re-scaled with ``lam * own + (1 - lam) * partner`` row statistics, lam ~ Beta(alpha, alpha) per patch, the
    partner from a random permutation of the batch.  The statistics carry no gradient.  The output's row means
    are then exactly the mixed means (row stds the mixed stds, up to eps): between the patch's and its
    partner's.  It simulates other devices' frequency responses.  p 0: off.

    The batch decision is a tensor (``torch.where``), not a Python branch, so nothing is read back to the host;
    the mixed batch is computed either way.
    """
    if p <= 0:
        return patches
    batch, device = patches.shape[0], patches.device
    apply = torch.rand((), device=device, generator=generator) < p
    lam = _per_sample(_beta(batch, alpha=alpha, device=device, generator=generator).to(patches.dtype), patches.ndim)
    perm = torch.randperm(batch, device=device, generator=generator)
    dims = tuple(range(1, patches.ndim - 2)) + (patches.ndim - 1,)  # all but batch and rows
    mean = patches.mean(dim=dims, keepdim=True).detach()
    std = (patches.var(dim=dims, keepdim=True, correction=0) + eps).sqrt().detach()
    mixed_mean = lam * mean + (1 - lam) * mean[perm]
    mixed_std = lam * std + (1 - lam) * std[perm]
    return torch.where(apply, (patches - mean) / std * mixed_std + mixed_mean, patches)


class Augmenter:
    """The enabled augmentations of an :class:`AugmentConfig`, as ``(patches, labels) -> (patches, targets)``.

    Order (fixed): gain -> time roll -> Freq-MixStyle -> time masks -> frequency masks -> mixup.  Level and
    position first, so masks are filled from the shifted patch and mixup mixes finished patches (and their masks).
    ``labels`` are class indices ``(batch,)`` (or soft targets); the targets returned are always soft
    ``(batch, n_classes)`` float32 (one-hot when mixup is off), for a soft-target loss.

    Randomness comes from one generator per device, seeded with ``seed``: the same seed and the same batches give
    the same outputs.  With nothing enabled (the default config) patches are returned unchanged.

    Args:
        config: the augmentations and their strengths.
        n_classes: number of classes of the targets.
        feature_kind, n_mels, n_mfcc, deltas: the features' kind and layout (for :func:`random_gain` on MFCCs).
        seed: seed of the generators.
    """

    def __init__(self, config: AugmentConfig, *, n_classes: int, feature_kind: str = "logmel", n_mels: int = 40,
                 n_mfcc: int = 13, deltas: bool = False, seed: int = 0):
        config.validate()
        if feature_kind not in FEATURE_KINDS:
            raise ValueError(f"feature_kind must be one of {FEATURE_KINDS}, got {feature_kind!r}")
        self.config = config
        self.n_classes = n_classes
        self.feature_kind, self.n_mels, self.n_mfcc, self.deltas = feature_kind, n_mels, n_mfcc, deltas
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        steps = {"gain": config.gain_db > 0, "roll": config.roll_frames > 0, "freq_mixstyle": config.mixstyle_p > 0,
                 "time_mask": config.time_masks > 0, "freq_mask": config.freq_masks > 0,
                 "mixup": config.mixup_alpha > 0}
        self.enabled: list[str] = [name for name, on in steps.items() if on]

    @classmethod
    def from_config(cls, config: Config, n_classes: int, *, seed: int | None = None) -> "Augmenter":
        """The augmenter of ``config.augment`` for ``config.features``; seed None: ``config.train.seed``."""
        f = config.features
        return cls(config.augment, n_classes=n_classes, feature_kind=f.kind, n_mels=f.n_mels, n_mfcc=f.n_mfcc,
                   deltas=f.use_deltas, seed=config.train.seed if seed is None else seed)

    def generator(self, device: torch.device | str) -> torch.Generator:
        """This augmenter's generator on ``device`` (made and seeded on first use)."""
        device = torch.device(device)
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def __call__(self, patches: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch: ``(batch, channels, rows, frames)`` patches and ``(batch,)`` labels ->
        ``(patches of the same shape and dtype, (batch, n_classes) float32 targets)``."""
        c = self.config
        g = self.generator(patches.device) if self.enabled else None
        x = patches
        if "gain" in self.enabled:
            x = random_gain(x, max_db=c.gain_db, kind=self.feature_kind, n_mels=self.n_mels, n_mfcc=self.n_mfcc,
                            deltas=self.deltas, generator=g)
        if "roll" in self.enabled:
            x = time_roll(x, max_frames=c.roll_frames, generator=g)
        if "freq_mixstyle" in self.enabled:
            x = freq_mixstyle(x, p=c.mixstyle_p, alpha=c.mixstyle_alpha, generator=g)
        if "time_mask" in self.enabled:
            x = spec_mask(x, masks=c.time_masks, width=c.time_mask_frames, axis=-1, generator=g)
        if "freq_mask" in self.enabled:
            x = spec_mask(x, masks=c.freq_masks, width=c.freq_mask_rows, axis=-2, generator=g)
        x, targets = mixup(x, labels, alpha=c.mixup_alpha, n_classes=self.n_classes, generator=g)
        return x, targets.to(torch.float32)

    def __repr__(self) -> str:
        return f"Augmenter({', '.join(self.enabled) or 'nothing'}, seed={self.seed})"


def _beta(n: int, *, alpha: float, device: torch.device | str,
          generator: torch.Generator | None) -> torch.Tensor:
    """``(n,)`` float32 draws of Beta(alpha, alpha) as X / (X + Y) of two Gamma(alpha) draws.

    ``torch.distributions.Beta`` takes no generator; ``torch._standard_gamma`` (which it uses) does.
    """
    shape = torch.full((2, n), float(alpha), dtype=torch.float32, device=device)
    gamma = torch._standard_gamma(shape, generator=generator)
    lam = gamma[0] / (gamma[0] + gamma[1])
    return torch.nan_to_num(lam, nan=0.5)  # both gammas underflowing (tiny alpha): an even mix


def _mix(values: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam * values + (1 - lam) * values[perm]`` with lam ``(batch,)`` broadcast over the other axes."""
    lam = _per_sample(lam, values.ndim)
    return lam * values + (1 - lam) * values[perm]


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(batch,)`` values shaped ``(batch, 1, ..., 1)`` to broadcast over a ``ndim``-dimensional batch."""
    return values.view(values.shape[0], *([1] * (ndim - 1)))
