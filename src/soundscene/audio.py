"""Audio input: decode (soundfile), check, mix down, resample (soxr), crop/pad.

Every function returns float32 arrays shaped ``(channels, samples)``.
Anything wrong with a file raises :class:`AudioError` with one line naming
the file and the problem.  No function here has a hidden default sample rate:
the caller always says which rate it wants.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .config import AudioConfig
from .errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: rate in Hz, channel count, frames (samples per channel)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Read a file's header. Raises AudioError if it is missing, unreadable or empty."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file does not exist")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: contains no audio frames")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                     str(info.format), str(info.subtype))


def load_audio(path: str | Path, *, sample_rate: int, channels: int = 1,
               min_seconds: float = 0.0, max_seconds: float | None = None) -> np.ndarray:
    """Decode, check, mix down and resample one file.

    Args:
        path: any file libsndfile reads (WAV 8/16/24/32-bit int or float, FLAC, OGG, MP3...).
        sample_rate: target rate in Hz (resampled with soxr "HQ" when it differs).
        channels: 1 averages all channels to mono; N > 1 requires a file with N channels.
        min_seconds: refuse files shorter than this (seconds, before resampling).
        max_seconds: refuse files longer than this (seconds); None for no limit.

    Returns:
        float32 array, shape ``(channels, samples)``, at ``sample_rate`` Hz.

    Raises:
        AudioError: unreadable, empty, truncated, non-finite, silent, too short or
        too long files, and channel counts that do not fit.
    """
    info = audio_info(path)
    path = info.path
    if max_seconds is not None and info.duration_seconds > max_seconds:
        raise AudioError(f"{path}: {info.duration_seconds:.1f} s is longer than the limit of "
                         f"{max_seconds:.0f} s; split the recording or raise audio.max_seconds")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: decoding failed ({_short(exc)}); the file is damaged") from None
    if data.shape[0] != info.frames:
        raise AudioError(f"{path}: truncated: header declares {info.frames} frames but only "
                         f"{data.shape[0]} could be read")
    declared = _declared_wav_frames(path)
    if declared is not None and declared > data.shape[0]:
        raise AudioError(f"{path}: truncated: WAV header declares {declared} frames but the file "
                         f"holds only {data.shape[0]}")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio frames")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    duration = data.shape[0] / file_rate
    if duration < min_seconds:
        raise AudioError(f"{path}: {duration:.2f} s is shorter than the minimum of {min_seconds:g} s")
    if not np.any(data):
        raise AudioError(f"{path}: is digital silence (every sample is 0)")
    waveform = data.T  # (channels, frames)
    if channels == 1:
        waveform = waveform.mean(axis=0, keepdims=True)
    elif waveform.shape[0] != channels:
        raise AudioError(f"{path}: has {waveform.shape[0]} channels but the configuration expects "
                         f"{channels}; set audio.channels=1 to mix down")
    return resample(waveform, orig_rate=int(file_rate), target_rate=sample_rate)


def resample(waveform: np.ndarray, *, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample ``(channels, samples)`` float32 audio from orig_rate to target_rate Hz (soxr HQ).

    Returns a C-contiguous float32 array ``(channels, round(samples * target / orig))``.
    """
    if orig_rate == target_rate:
        return np.ascontiguousarray(waveform, dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(waveform.T), orig_rate, target_rate, quality="HQ")
    if out.ndim == 1:
        out = out[:, None]
    return np.ascontiguousarray(out.T, dtype=np.float32)


def fix_length(waveform: np.ndarray, *, length: int, pad_mode: str = "repeat") -> np.ndarray:
    """Crop or pad the last axis to ``length`` samples.

    Longer input keeps its first ``length`` samples.  Shorter input is tiled
    (pad_mode "repeat") or padded with zeros at the end ("zeros").
    """
    n = waveform.shape[-1]
    if n == length:
        return waveform
    if n > length:
        return np.ascontiguousarray(waveform[..., :length])
    if pad_mode == "repeat":
        reps = -(-length // n)
        return np.ascontiguousarray(np.tile(waveform, (1,) * (waveform.ndim - 1) + (reps,))[..., :length])
    if pad_mode == "zeros":
        pad = [(0, 0)] * (waveform.ndim - 1) + [(0, length - n)]
        return np.pad(waveform, pad)
    raise ValueError(f"unknown pad_mode {pad_mode!r}")


def load_clip(path: str | Path, audio: AudioConfig, *, fixed_length: bool = True) -> np.ndarray:
    """Load a file as the configuration asks: ``(channels, samples)`` float32.

    With fixed_length (and audio.clip_seconds set), the clip is cropped or
    padded to exactly audio.clip_samples; otherwise the whole file is kept,
    padded up to one clip length when shorter.
    """
    waveform = load_audio(path, sample_rate=audio.sample_rate, channels=audio.channels,
                          min_seconds=audio.min_seconds, max_seconds=audio.max_seconds)
    target = audio.clip_samples
    if target is None:
        return waveform
    if fixed_length or waveform.shape[-1] < target:
        return fix_length(waveform, length=target, pad_mode=audio.pad_mode)
    return waveform


def _declared_wav_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header declares in its data chunk, or None if not a (sized) WAV.

    libsndfile silently shortens a truncated WAV to what is there; the header
    still says how much there should be, so we read it ourselves.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            endian = "<" if head[:4] == b"RIFF" else ">"
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
                if chunk_id == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) >= 14:
                        block_align = struct.unpack(endian + "H", fmt[12:14])[0]
                elif chunk_id == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None  # streamed WAV with an unknown size
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
