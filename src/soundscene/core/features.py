"""The front end, in torch, batched: waveform -> log-mel or MFCC (+ deltas) -> patches.

Each step is a small pure function that matches librosa on the same input
(see tests/test_features.py for the tolerances):

* :func:`stft_power`   — ``|STFT|**2`` with centred frames padded with zeros and a
  periodic Hann window (librosa's ``stft(center=True, pad_mode="constant")``);
* :func:`mel_filterbank` — librosa's Slaney mel matrix, as a tensor;
* :func:`power_to_db`  — ``librosa.power_to_db`` with the ``top_db`` floor taken per clip;
* :func:`dct_matrix`   — the orthonormal DCT-II that ``librosa.feature.mfcc`` applies;
* :func:`deltas`       — ``librosa.feature.delta`` (Savitzky-Golay, edge-aware "interp" mode);
* :func:`cut_patches`  — fixed-length time windows for the network.

:class:`FrontEnd` chains them as an ``nn.Module`` whose constant matrices are
buffers, so it moves to a GPU with ``.to(device)``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn
from torch.nn import functional as F

from ..config import Config, FeatureConfig

AMIN = 1e-10  # smallest power before the logarithm, as librosa.power_to_db


def stft_power(waveform: torch.Tensor, *, n_fft: int, hop_length: int, win_length: int,
               window: torch.Tensor | None = None) -> torch.Tensor:
    """Power spectrogram of ``(..., samples)`` audio.

    Frames are centred (the signal is padded with n_fft // 2 zeros at each end)
    and weighted by a periodic Hann window of win_length samples, centred in n_fft.

    Returns:
        ``(..., n_fft // 2 + 1, 1 + samples // hop_length)`` float tensor of |X|^2.
    """
    if window is None:
        window = torch.hann_window(win_length, periodic=True, dtype=waveform.dtype, device=waveform.device)
    batch_shape = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1])
    spec = torch.stft(flat, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*batch_shape, *power.shape[-2:])


def mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised mel filters, ``(n_mels, n_fft // 2 + 1)`` float32.

    Frequencies in Hz; fmax None means sample_rate / 2.  Taken from
    ``librosa.filters.mel`` so that the two front ends share one definition.
    """
    import librosa  # imported here: librosa is slow to import and only needed to build the matrix

    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                htk=False, norm="slaney")
    return torch.from_numpy(np.ascontiguousarray(basis, dtype=np.float32))


def power_to_db(power: torch.Tensor, *, top_db: float | None = 80.0, ref: float = 1.0,
                amin: float = AMIN) -> torch.Tensor:
    """``10 * log10(max(power, amin) / ref)``, floored at ``top_db`` below each clip's peak.

    The peak is taken over the last two axes (frequency, time) of each clip,
    never across a batch, so a clip's features do not depend on its batch mates.
    Shape is preserved.
    """
    db = 10.0 * torch.log10(torch.clamp(power, min=amin)) - 10.0 * float(np.log10(max(amin, ref)))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def dct_matrix(*, n_input: int, n_output: int) -> torch.Tensor:
    """Orthonormal DCT-II as a ``(n_output, n_input)`` float32 matrix (librosa's MFCC transform)."""
    basis = scipy.fft.dct(np.eye(n_input), type=2, norm="ortho", axis=0)[:n_output]
    return torch.from_numpy(np.ascontiguousarray(basis, dtype=np.float32))


def savgol_operator(*, width: int, order: int) -> torch.Tensor:
    """The ``(width, width)`` matrix of librosa's delta filter on a width-frame signal.

    Row i gives output frame i as weights over input frames 0..width-1;
    the middle row is the filter used away from the edges, the first and
    last width // 2 rows are the edge polynomial fits of scipy's "interp" mode.
    """
    eye = np.eye(width)
    op = scipy.signal.savgol_filter(eye, window_length=width, polyorder=order, deriv=order,
                                    mode="interp", axis=0)
    return torch.from_numpy(np.ascontiguousarray(op, dtype=np.float32))


def deltas(features: torch.Tensor, *, width: int = 9, order: int = 1,
           operator: torch.Tensor | None = None) -> torch.Tensor:
    """Local derivative of ``(..., rows, frames)`` features along time, as librosa.feature.delta.

    Args:
        width: frames in the filter (odd, >= 3); needs frames >= width.
        order: 1 for deltas, 2 for delta-deltas (computed directly, as librosa).
        operator: a precomputed :func:`savgol_operator` (saves rebuilding it).

    Returns:
        Tensor of the same shape.
    """
    frames = features.shape[-1]
    if frames < width:
        raise ValueError(f"deltas need at least {width} frames, got {frames}")
    op = operator if operator is not None else savgol_operator(width=width, order=order)
    op = op.to(device=features.device, dtype=features.dtype)
    half = width // 2
    flat = features.reshape(-1, 1, frames)
    middle = F.conv1d(flat, op[half].view(1, 1, width)).squeeze(1)
    first = flat[:, 0, :width] @ op[:half].T
    last = flat[:, 0, -width:] @ op[width - half:].T
    out = torch.cat([first, middle, last], dim=-1)
    return out.reshape(features.shape)


def patch_view(features: torch.Tensor, *, patch_frames: int, hop_frames: int) -> torch.Tensor:
    """Patches of ``(..., rows, frames)`` features as a view ``(..., n_patches, rows, patch_frames)``.

    Patches start every hop_frames frames; frames after the last whole patch
    are not used.  Input shorter than one patch is first tiled up to one patch
    (the only case that copies).  n_patches = 1 + (frames - patch_frames) // hop_frames.
    Training, validation, evaluation and inference all cut patches with this function.
    """
    frames = features.shape[-1]
    if frames < patch_frames:
        reps = -(-patch_frames // frames)
        features = features.repeat(*([1] * (features.ndim - 1)), reps)[..., :patch_frames]
    return features.unfold(-1, patch_frames, hop_frames).movedim(-2, -3)  # (..., n, rows, patch)


def cut_patches(features: torch.Tensor, *, patch_frames: int, hop_frames: int) -> torch.Tensor:
    """:func:`patch_view`, copied into a contiguous ``(..., n_patches, rows, patch_frames)`` tensor."""
    return patch_view(features, patch_frames=patch_frames, hop_frames=hop_frames).contiguous()


def n_patches(frames: int, *, patch_frames: int, hop_frames: int) -> int:
    """How many patches :func:`cut_patches` makes from ``frames`` frames."""
    return 1 + (max(frames, patch_frames) - patch_frames) // hop_frames


class FrontEnd(nn.Module):
    """Waveform ``(..., samples)`` at ``sample_rate`` Hz -> features ``(..., rows, frames)``.

    rows = config.n_rows (n_mels for log-mel; n_mfcc, times 3 with deltas, for MFCC);
    frames = 1 + samples // hop_length.  Runs on whatever device the module is on.
    """

    def __init__(self, config: FeatureConfig, *, sample_rate: int):
        super().__init__()
        self.config = config
        self.sample_rate = sample_rate
        self.n_fft = config.fft_size(sample_rate)
        self.win_length = config.win_length(sample_rate)
        self.hop_length = config.hop_length(sample_rate)
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True), persistent=False)
        self.register_buffer("mel", mel_filterbank(sample_rate=sample_rate, n_fft=self.n_fft,
                                                   n_mels=config.n_mels, fmin=config.fmin,
                                                   fmax=config.fmax), persistent=False)
        if config.kind == "mfcc":
            self.register_buffer("dct", dct_matrix(n_input=config.n_mels, n_output=config.n_mfcc),
                                 persistent=False)
        if config.use_deltas:
            self.register_buffer("delta1", savgol_operator(width=config.delta_width, order=1), persistent=False)
            self.register_buffer("delta2", savgol_operator(width=config.delta_width, order=2), persistent=False)

    @classmethod
    def from_config(cls, config: Config) -> "FrontEnd":
        """The front end a configuration describes (the one place it is built from one)."""
        return cls(config.features, sample_rate=config.audio.sample_rate)

    def frames(self, samples: int) -> int:
        """Frames produced from ``samples`` samples."""
        return 1 + samples // self.hop_length

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = stft_power(waveform, n_fft=self.n_fft, hop_length=self.hop_length,
                           win_length=self.win_length, window=self.window)
        mel_power = torch.matmul(self.mel, power)
        feats = power_to_db(mel_power, top_db=self.config.top_db)
        if self.config.kind == "mfcc":
            feats = torch.matmul(self.dct, feats)
        if self.config.use_deltas:
            d1 = deltas(feats, width=self.config.delta_width, order=1, operator=self.delta1)
            d2 = deltas(feats, width=self.config.delta_width, order=2, operator=self.delta2)
            feats = torch.cat([feats, d1, d2], dim=-2)
        return feats
