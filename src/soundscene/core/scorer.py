"""The window scorer: windows of audio at the model's rate in, class probabilities out.

Every path from audio to probabilities goes through :class:`WindowScorer`: the
file classifier and its timeline, the stream classifier, and the ONNX exporter's
verification.  One window is prepared as training clips were (shape checked,
mixed to the model's channels, padded to the clip length with
``audio.pad_mode``), featurised on its own by the torch front end, cut into
patches, run through the network and aggregated; features and probabilities
are checked finite.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..config import Config
from ..errors import AudioError, ModelFileError
from .audio import as_channels_first, fix_length, level_dbfs, score_by_length
from .features import FrontEnd
from .models import SceneNet, predict_clips

OVERVIEW_COLUMNS = 24  # coarse spectrogram columns kept per window for timeline pictures


class WindowScorer:
    """A network and its front end, built from one configuration, on one device."""

    def __init__(self, net: SceneNet, config: Config, *, n_classes: int, device: str | torch.device = "cpu"):
        self.config = config
        self.n_classes = int(n_classes)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.front_end = FrontEnd.from_config(config).to(self.device)

    @property
    def channels(self) -> int:
        return self.config.audio.channels

    def mix(self, block: np.ndarray) -> np.ndarray:
        """``(channels, n)`` -> the model's channels: a mono model averages every channel."""
        if self.channels == 1 and block.shape[0] > 1:
            return block.mean(axis=0, keepdims=True)
        return block

    def prepare(self, waveform: np.ndarray) -> np.ndarray:
        """One clip at the model's rate -> ``(channels, >= clip samples)`` float32, padded as in training."""
        w = self.mix(as_channels_first(waveform))
        if w.shape[0] != self.channels:
            raise AudioError(f"waveform has {w.shape[0]} channels; the model expects {self.channels}")
        if w.shape[-1] < self.config.audio.clip_samples:
            w = fix_length(w, length=self.config.audio.clip_samples, pad_mode=self.config.audio.pad_mode)
        return np.ascontiguousarray(w)

    @torch.no_grad()
    def score(self, batch: np.ndarray, overview: list | None = None) -> np.ndarray:
        """``(n, channels, samples)`` prepared windows -> ``(n, n_classes)`` probabilities.

        AudioError when the features are not finite; ModelFileError when the network turns finite
        features into non-finite probabilities (damaged weights).  With ``overview`` (a list), each
        window's coarse spectrogram ``(rows, OVERVIEW_COLUMNS)`` is appended to it.
        """
        feats = self.front_end(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        if not torch.isfinite(feats).all():
            raise AudioError("features are not finite (samples too large?)")
        probs = predict_clips(self.net, feats, features_config=self.config.features,
                              aggregate=self.config.model.aggregate).numpy()
        if not np.isfinite(probs).all():
            raise ModelFileError("the model gives non-finite probabilities on finite features; its weights are "
                                 "damaged")
        if overview is not None:
            overview.extend(_coarse(feats))
        return probs

    def score_heard(self, windows: Sequence[np.ndarray], *, silence_dbfs: float,
                    overview: list | None = None) -> list[np.ndarray | None]:
        """Each window's probabilities (an array of its own: a view would keep the whole batch's buffer alive
        for as long as the window is kept), or None for a silent window: one whose level, measured around its
        mean (so a DC offset is silence too), is below ``silence_dbfs``; silent windows are not scored.  With
        ``overview`` (a list), every window's coarse spectrogram is appended to it, silent ones included."""
        silent = [level_dbfs(w, remove_dc=True) < silence_dbfs for w in windows]
        heard = [w for w, quiet in zip(windows, silent) if not quiet]
        heard_columns: list | None = [] if overview is not None else None
        scores = iter(self.score(np.stack(heard), heard_columns) if heard else ())
        quiet_columns = iter(self.overview(np.stack([w for w, quiet in zip(windows, silent) if quiet]))
                             if overview is not None and any(silent) else ())
        heard_columns_iter = iter(heard_columns or ())
        out: list[np.ndarray | None] = []
        for quiet in silent:
            out.append(None if quiet else np.array(next(scores), dtype=np.float32))
            if overview is not None:
                overview.append(next(quiet_columns) if quiet else next(heard_columns_iter))
        return out

    @torch.no_grad()
    def overview(self, batch: np.ndarray) -> list[np.ndarray]:
        """Each window's coarse spectrogram ``(rows, OVERVIEW_COLUMNS)``, without running the network (for
        windows that are not classified, such as silent ones)."""
        return _coarse(self.front_end(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
                                      .to(self.device)))

    def score_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` of clips at the model's rate, each prepared and scored as one
        window.  Clips of equal length are batched together; batching does not change results."""
        return score_by_length([self.prepare(w) for w in clips], self.score, self.n_classes)


def _coarse(feats: torch.Tensor) -> list[np.ndarray]:
    """``(n, channels, rows, frames)`` features -> n arrays ``(rows, <= OVERVIEW_COLUMNS)`` (channels averaged)."""
    f = feats.mean(dim=1).cpu().numpy()
    cols = max(1, min(f.shape[-1], OVERVIEW_COLUMNS))
    edges = np.linspace(0, f.shape[-1], cols + 1).astype(int)
    return list(np.stack([f[..., a:b].mean(-1) for a, b in zip(edges[:-1], edges[1:])], -1))
