"""Inference: a model file in, scene labels and probabilities out.

:class:`SceneClassifier` is the narrow API every application uses (files, a
live microphone, HTTP, MQTT, the equalizer)::

    clf = SceneClassifier.from_file("run/model.safetensors")
    clf.predict_file("street.wav").label
    clf.predict_waveform(samples, sample_rate=48000)  # -> probabilities (n_classes,)

Files longer than the model's clip length are analysed over their whole
length (all their patches vote); shorter ones are padded as in training.
Batched prediction gives the same result as one-by-one prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, fix_length, load_clip, resample
from .errors import AudioError, SoundsceneError
from .features import FrontEnd
from .modelfile import load_model_file
from .models import predict_clips
from .runtime import tune_malloc


@dataclass
class Prediction:
    """One file's result: the top label, its probability, all class probabilities, or the error."""

    path: str
    label: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    error: str | None = None


class SceneClassifier:
    """A loaded model: the front end and network built from the model file's configuration."""

    def __init__(self, bundle, *, device: str | torch.device = "cpu"):
        tune_malloc()
        self.config = bundle.config
        self.classes = bundle.classes
        self.metadata = bundle.metadata
        self.device = torch.device(device)
        self.net = bundle.net.to(self.device).eval()
        self.front_end = FrontEnd(self.config.features, sample_rate=self.config.audio.sample_rate).to(self.device)

    @classmethod
    def from_file(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "SceneClassifier":
        """Load a model file (see :mod:`soundscene.modelfile`)."""
        return cls(load_model_file(path), device=device)

    @property
    def sample_rate(self) -> int:
        """The rate in Hz the model works at."""
        return self.config.audio.sample_rate

    def predict_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` for waveforms already at :attr:`sample_rate`.

        Each waveform is ``(samples,)`` or ``(channels, samples)`` float32; clips of
        equal length are batched together.
        """
        prepared = [self._prepare(w) for w in waveforms]
        out = np.zeros((len(prepared), len(self.classes)), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for k, w in enumerate(prepared):
            by_length.setdefault(w.shape[-1], []).append(k)
        for indices in by_length.values():
            batch = torch.from_numpy(np.stack([prepared[k] for k in indices])).to(self.device)
            feats = self.front_end(batch)
            probs = predict_clips(self.net, feats, features_config=self.config.features,
                                  aggregate=self.config.model.aggregate)
            out[indices] = probs.numpy()
        return out

    def predict_waveform(self, waveform: np.ndarray, *, sample_rate: int) -> np.ndarray:
        """Probabilities ``(n_classes,)`` for one waveform at ``sample_rate`` Hz (resampled if needed)."""
        waveform = self._prepare_shape(waveform)
        if not np.isfinite(waveform).all():
            raise AudioError("waveform contains NaN or infinite samples")
        waveform = resample(waveform, orig_rate=sample_rate, target_rate=self.sample_rate)
        return self.predict_waveforms([waveform])[0]

    def predict_file(self, path: str | Path) -> Prediction:
        """Classify one file; raises AudioError with one line if it cannot be used."""
        return self.predict_files([path], skip_bad=False)[0]

    def predict_files(self, paths: Iterable[str | Path], *, batch_size: int = 16, skip_bad: bool = True,
                      progress: bool = False) -> list[Prediction]:
        """Classify many files, batch_size at a time.

        With skip_bad, a file that cannot be used gets a Prediction whose
        ``error`` says why (nothing is dropped silently); otherwise the first
        such file raises AudioError.
        """
        from tqdm.auto import tqdm

        paths = [Path(p) for p in paths]
        results: list[Prediction | None] = [None] * len(paths)
        pending: list[tuple[int, np.ndarray]] = []

        def flush():
            if pending:
                probs = self.predict_waveforms([w for _, w in pending])
                for (k, _), p in zip(pending, probs):
                    results[k] = self._prediction(paths[k], p)
                pending.clear()

        for k, path in enumerate(tqdm(paths, desc="predicting", unit="file", disable=not progress)):
            try:
                waveform = load_clip(path, self.config.audio, fixed_length=False)
            except AudioError as exc:
                if not skip_bad:
                    raise
                results[k] = Prediction(str(path), None, None, None, error=str(exc))
                continue
            pending.append((k, waveform))
            if len(pending) >= batch_size:
                flush()
        flush()
        return [r for r in results if r is not None]

    @staticmethod
    def _prepare_shape(waveform: np.ndarray) -> np.ndarray:
        """(samples,) or (channels, samples) float32; AudioError for empty or (samples, channels) input."""
        w = np.asarray(waveform, dtype=np.float32)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2 or w.shape[-1] == 0:
            raise AudioError(f"waveform must be (samples,) or (channels, samples) with samples > 0, got {w.shape}")
        if w.shape[0] > w.shape[1] or w.shape[0] > 16:
            raise AudioError(f"waveform of shape {w.shape} looks like (samples, channels) as soundfile returns it; "
                             "pass its transpose, (channels, samples)")
        return w

    def _prepare(self, waveform: np.ndarray) -> np.ndarray:
        w = self._prepare_shape(waveform)
        channels = self.config.audio.channels
        if channels == 1 and w.shape[0] > 1:
            w = w.mean(axis=0, keepdims=True)
        if w.shape[0] != channels:
            raise AudioError(f"waveform has {w.shape[0]} channels; the model expects {channels}")
        clip = self.config.audio.clip_samples
        if w.shape[-1] < clip:
            w = fix_length(w, length=clip, pad_mode=self.config.audio.pad_mode)
        return np.ascontiguousarray(w)

    def _prediction(self, path: Path, probs: np.ndarray) -> Prediction:
        k = int(np.argmax(probs))
        return Prediction(str(path), self.classes[k], float(probs[k]),
                          {c: float(p) for c, p in zip(self.classes, probs)})


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files and folders (searched recursively for audio files) -> sorted list of files.

    Raises SoundsceneError for a path that does not exist or a folder without audio.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise SoundsceneError(f"{path}: folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise SoundsceneError(f"{path}: does not exist")
    return files
