"""Audio input: decode (soundfile), check, mix down, resample (soxr), crop/pad.

Every function returns float32 arrays shaped ``(channels, samples)``.
Anything wrong with a file raises :class:`AudioError` with one line naming
the file and the problem.  No function here has a hidden default sample rate:
the caller always says which rate it wants.

Limits, each refused in one line: sample rates outside 1 kHz..768 kHz (a
damaged header; a 1-Hz WAV would otherwise be resampled into gigabytes),
samples beyond ±1000 (full scale is ±1: such float files are damaged or
integer-scaled, and their power overflows float32 into NaN), NaN/inf,
exact digital silence.  Near-silence is not refused; :func:`level_dbfs`
measures it and callers report it (``LOW_LEVEL_DBFS``).  What the decoders
print on the process's stderr (libmpg123's "Xing stream size" chatter) is
swallowed so that our one-line messages stand alone.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr

from .._io import atomic_write
from ..config import AudioConfig
from ..errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
MAX_ABS_SAMPLE = 1000.0
LOW_LEVEL_DBFS = -80.0  # RMS level below which a recording is reported as near-silent
BLOCK_SECONDS = 10.0  # what a file is decoded in when it is read block by block
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_decoder():
    """Swallow what C decoders write straight to file descriptor 2 while the block runs.

    The descriptor is restored afterwards; a lock keeps threads from
    interleaving redirections.  Python-level writes to sys.stderr are unaffected.
    It redirects the whole process's descriptor 2, so it is used once per file (opening it, where mpg123
    says "Xing stream size off..."), never around each block a long recording is read in.
    """
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield
                finally:
                    os.dup2(saved, 2)
        finally:
            os.close(saved)


def score_by_length(clips: Sequence[np.ndarray], score: Callable[[np.ndarray], np.ndarray], width: int) -> np.ndarray:
    """``(n, width)``: ``score`` of each clip, clips of equal length stacked into one batch (in order), so a
    scorer's batching never changes what a clip gets."""
    out = np.zeros((len(clips), width), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for k, w in enumerate(clips):
        by_length.setdefault(w.shape[-1], []).append(k)
    for indices in by_length.values():
        out[indices] = score(np.stack([clips[k] for k in indices]))
    return out


def level_dbfs(waveform: np.ndarray, *, remove_dc: bool = False) -> float:
    """RMS level of ``(..., samples)`` audio in dB relative to full scale (a full-scale sine is -3 dBFS).

    remove_dc: measure around each channel's mean, so that a constant offset (a DC-coupled microphone that
    hears nothing) does not count as sound.  Digital silence gives -inf; callers that print it should clamp
    or say "silent".
    """
    w = np.asarray(waveform, dtype=np.float64)
    if remove_dc and w.size:
        w = w - w.mean(axis=-1, keepdims=True)
    rms = float(np.sqrt(np.mean(np.square(w)))) if w.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


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


_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))
_OGG_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, serial, page number, CRC, segments


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, no initial or final inversion), in
    C speed through zlib's reflected CRC-32 on bit-reversed bytes."""
    raw = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def check_ogg_pages(path: str | Path) -> None:
    """AudioError (one line) when an Ogg file's pages do not follow each other or fail their checksum.

    libsndfile's Vorbis and Opus decoders step over a damaged page without a word and the frame count still
    matches the header, so a file with bytes overwritten or inserted in the middle would be classified as if
    whole (FLAC and MP3 decoders refuse such files).  Read page by page: memory does not grow with length."""
    with open(path, "rb") as f:
        at = 0
        while True:
            head = f.read(_OGG_HEADER.size)
            if not head:
                return
            if len(head) < _OGG_HEADER.size or head[:4] != b"OggS":
                raise AudioError(f"{path}: damaged Ogg stream at byte {at} (no page starts there); the file is "
                                 "damaged")
            crc, segments = _OGG_HEADER.unpack(head)[6:8]
            table = f.read(segments)
            body = f.read(sum(table))
            if len(table) < segments or len(body) < sum(table):
                raise AudioError(f"{path}: truncated: the Ogg stream ends without its last page (the file was cut "
                                 "short); copy it again")
            if _ogg_crc(head[:22] + b"\0\0\0\0" + head[26:] + table + body) != crc:
                raise AudioError(f"{path}: damaged Ogg page at byte {at} (checksum mismatch); the file is damaged")
            at += len(head) + len(table) + len(body)


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
        with quiet_decoder():
            info = sf.info(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: contains no audio frames")
    check_sample_rate(info.samplerate, f"{path}: declares a sample rate of", hint="; the header is damaged")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                     str(info.format), str(info.subtype))


def recognised_format(path: str | Path) -> bool:
    """Whether the decoder recognises the file's format at all (it may still be unusable: too short,
    truncated, silent...).  The HTTP service answers 415 when it does not, 422 when it does."""
    try:
        with quiet_decoder():
            sf.info(os.fsencode(path))
        return True
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return False


def load_audio(path: str | Path, *, sample_rate: int, channels: int = 1,
               min_seconds: float = 0.0, max_seconds: float | None = None,
               first_seconds: float | None = None) -> np.ndarray:
    """Decode, check, mix down and resample one file.

    Args:
        path: any file libsndfile reads (WAV 8/16/24/32-bit int or float, FLAC, OGG, MP3...).
        sample_rate: target rate in Hz (resampled with soxr "HQ" when it differs).
        channels: 1 averages all channels to mono; N > 1 requires a file with N channels.
        min_seconds: refuse files shorter than this (seconds, before resampling).
        max_seconds: refuse files longer than this (seconds); None for no limit.
        first_seconds: decode only the first this many seconds (the rest of a long file is not read).

    Returns:
        float32 array, shape ``(channels, samples)``, at ``sample_rate`` Hz.

    Raises:
        AudioError: unreadable, empty, truncated, non-finite, silent, too short or
        too long files, and channel counts that do not fit.
    """
    info = audio_info(path)
    if info.format == "OGG":
        check_ogg_pages(path)
    path = info.path
    if max_seconds is not None and info.duration_seconds > max_seconds:
        raise AudioError(f"{path}: {info.duration_seconds:.1f} s is longer than audio.max_seconds "
                         f"({max_seconds:g} s); split the recording, or raise the limit (train, cv, datasets: "
                         f"--set audio.max_seconds={int(info.duration_seconds) + 1}; evaluate: --max-seconds "
                         f"{int(info.duration_seconds) + 1}; predict reads any length)")
    check_length(info, min_seconds=min_seconds)
    wanted = info.frames
    if first_seconds is not None:
        wanted = min(info.frames, max(1, int(np.ceil(first_seconds * info.sample_rate))))
    try:
        with quiet_decoder():
            data, file_rate = sf.read(os.fsencode(path), frames=wanted, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: decoding failed ({_short(exc)}); the file is damaged") from None
    if data.shape[0] != wanted:
        raise AudioError(f"{path}: truncated: header declares {info.frames} frames but only "
                         f"{data.shape[0]} could be read")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio frames")
    check_samples(data, path)
    waveform = data.T  # (channels, frames)
    if channels == 1:
        waveform = waveform.mean(axis=0, keepdims=True)
    elif waveform.shape[0] != channels:
        raise AudioError(f"{path}: has {waveform.shape[0]} channels but the configuration expects "
                         f"{channels}; set audio.channels=1 to mix down")
    return resample(waveform, orig_rate=int(file_rate), target_rate=sample_rate)


def check_length(info: AudioInfo, *, min_seconds: float = 0.0) -> None:
    """Refuse, from the header alone, a file shorter than min_seconds or a WAV shorter than its header says."""
    if info.duration_seconds < min_seconds:
        raise AudioError(f"{info.path}: {info.duration_seconds:.6g} s is shorter than the minimum of "
                         f"{min_seconds:g} s")
    declared = _declared_wav_frames(info.path)
    if declared is not None and declared > info.frames:
        raise AudioError(f"{info.path}: truncated: WAV header declares {declared} frames but the file "
                         f"holds only {info.frames}")
    if _ogg_truncated(info.path):
        raise AudioError(f"{info.path}: truncated: the Ogg stream ends without its last page (the file was cut "
                         "short); copy it again")


def check_samples(data: np.ndarray, where: str | Path, *, silence_ok: bool = False) -> None:
    """Refuse, in one line naming ``where``, samples that are NaN/inf, beyond ±MAX_ABS_SAMPLE, or (unless
    silence_ok, for one block of a longer recording) all zero."""
    if not np.isfinite(data).all():
        raise AudioError(f"{where}: contains NaN or infinite samples")
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(f"{where}: samples reach {peak:.3g}, beyond ±{MAX_ABS_SAMPLE:g} (full scale is ±1); "
                         "the file is damaged or holds integer-scaled floats - rescale it to ±1")
    if peak == 0.0 and not silence_ok:
        raise AudioError(f"{where}: is digital silence (every sample is 0)")


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
    target = audio.clip_samples
    first = audio.clip_seconds + 0.5 if fixed_length and target is not None else None  # margin for the resampler
    waveform = load_audio(path, sample_rate=audio.sample_rate, channels=audio.channels,
                          min_seconds=audio.min_seconds, max_seconds=audio.max_seconds, first_seconds=first)
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


OGG_PAGE_MAX = 27 + 255 + 255 * 255  # header, segment table, body: the largest an Ogg page can be


def _ogg_truncated(path: Path) -> bool:
    """True when an Ogg file (Vorbis, Opus, FLAC in Ogg) was cut short: its last page is incomplete or is not
    marked end-of-stream.  libsndfile reads such a file up to the cut without a word, so we look ourselves."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"OggS":
                return False
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - OGG_PAGE_MAX - 4)
            f.seek(start)
            tail = f.read()
    except OSError:
        return False
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:]
        if len(page) >= 27 and page[4] == 0:  # a page header (version 0)
            segments = page[26]
            if len(page) < 27 + segments:
                return True
            body = sum(page[27:27 + segments])
            if len(page) < 27 + segments + body:
                return True  # the last page is cut
            return not page[5] & 0x04  # a whole last page must close the stream (end-of-stream flag)
        at = tail.rfind(b"OggS", 0, at)
    return True


def _short(exc: BaseException) -> str:
    """The decoder's reason in a few words (our messages name the file themselves; file names are given to the
    decoder as bytes, so that names that are not UTF-8 open too)."""
    text = str(exc).strip().splitlines()
    last = text[-1] if text else type(exc).__name__
    if last.startswith("Error opening "):  # "Error opening b'name': Format not recognised."
        last = last.rsplit(": ", 1)[-1]
    return last


def check_sample_rate(rate: int, what: str = "sample rate", *, hint: str = "") -> int:
    """The rate as an int, or AudioError ``"{what} N Hz, outside 1000..768000 Hz{hint}"``: the one range of
    rates soundscene reads (a 1-Hz header would otherwise be resampled into gigabytes)."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{what} {rate} Hz, outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz{hint}")
    return int(rate)


def as_channels_first(waveform: np.ndarray) -> np.ndarray:
    """``(samples,)`` or ``(channels, samples)`` -> float32 ``(channels, samples)``; AudioError for empty input
    or for ``(samples, channels)`` as soundfile returns it."""
    w = np.asarray(waveform, dtype=np.float32)
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or w.shape[-1] == 0:
        raise AudioError(f"waveform must be (samples,) or (channels, samples) with samples > 0, got {w.shape}")
    if w.shape[0] > w.shape[1] or w.shape[0] > 16:
        raise AudioError(f"waveform of shape {w.shape} looks like (samples, channels) as soundfile returns it; "
                         "pass its transpose, (channels, samples)")
    return w


class AudioReader:
    """An audio file opened for reading in blocks of ``(channels, n)`` float32, each checked (NaN, range).

    The one place besides :func:`load_audio` that decodes files: inference reads recordings of any
    length through it, the equalizer reads music.  Use as a context manager.
    """

    def __init__(self, path: str | Path):
        self.info = audio_info(path)
        if self.info.format == "OGG":
            check_ogg_pages(self.info.path)
        self.frames_read = 0
        try:
            with quiet_decoder():
                self._file = sf.SoundFile(os.fsencode(self.info.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{self.info.path}: cannot read audio ({_short(exc)})") from None

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def seek(self, frame: int) -> None:
        """Go to ``frame`` (from the start), so that reading goes on from there (a span of a long file)."""
        try:
            with quiet_decoder():
                self._file.seek(int(frame))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.info.path}: cannot seek to frame {frame} ({_short(exc)}); the file is "
                             "damaged") from None
        self.frames_read = int(frame)

    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` more frames, ``(channels, n)``; n == 0 at the end."""
        try:  # not under quiet_decoder: that redirects the whole process's stderr, so only opening uses it
            data = self._file.read(max(0, int(frames)), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.info.path}: decoding failed ({_short(exc)}); the file is damaged") from None
        check_samples(data, self.info.path, silence_ok=True)
        self.frames_read += data.shape[0]
        return data.T

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """Every block to the end; AudioError at the end when fewer frames came than the header declares."""
        while True:
            block = self.read(frames)
            if block.shape[-1] == 0:
                break
            yield block
        if self.frames_read != self.info.frames:
            raise AudioError(f"{self.info.path}: truncated: header declares {self.info.frames} frames but only "
                             f"{self.frames_read} could be read")


def read_blocks(info: AudioInfo, *, block_seconds: float | None = None, start: int = 0) -> Iterator[np.ndarray]:
    """A file's decoded ``(channels, n)`` float32 blocks of ``block_seconds`` (default BLOCK_SECONDS), from frame
    ``start`` to the end, with the reader's checks."""
    block_seconds = BLOCK_SECONDS if block_seconds is None else block_seconds
    with AudioReader(info.path) as reader:
        if start:
            reader.seek(start)
        yield from reader.blocks(max(1, int(block_seconds * info.sample_rate)))


def write_audio_like(path: str | Path, blocks: Iterable[np.ndarray], *, like: AudioInfo) -> Path:
    """Write ``(samples, channels)`` blocks atomically at ``like``'s rate and channels, in the format named by
    ``path``'s suffix (else ``like``'s) and ``like``'s subtype where that format has it."""
    path = Path(path)
    fmt = path.suffix[1:].upper()
    fmt = fmt if fmt in sf.available_formats() else like.format
    subtype = like.subtype if sf.check_format(fmt, like.subtype) else sf.default_subtype(fmt)

    def write(tmp: Path) -> None:
        with sf.SoundFile(os.fsencode(tmp), "w", like.sample_rate, like.channels, subtype=subtype,
                          format=fmt) as dst:
            for block in blocks:
                dst.write(block)

    try:
        return atomic_write(path, write)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot write audio ({_short(exc)})") from None


class StreamResampler:
    """soxr's streaming resampler over ``(channels, n)`` blocks; its output equals the one-shot resampler's
    exactly, whatever the block sizes.  At the same rate it passes blocks through."""

    def __init__(self, rate: int, target: int, channels: int):
        self._stream = None if rate == target else soxr.ResampleStream(rate, target, channels, dtype="float32",
                                                                      quality="HQ")
        self.channels = channels

    def push(self, block: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return block
        return np.ascontiguousarray(self._stream.resample_chunk(np.ascontiguousarray(block.T)).T)

    def finish(self) -> np.ndarray:
        """What the resampler still holds at the end of the input (``(channels, 0)`` when nothing)."""
        if self._stream is None:
            return np.zeros((self.channels, 0), np.float32)
        rest = self._stream.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
        self._stream = None
        return np.ascontiguousarray(rest.T)


@dataclass(frozen=True)
class Input:
    """One input of a command, in the order given: an audio file (``path``), or what is wrong (``problem``)."""

    name: str
    path: Path | None = None
    problem: str | None = None


def expand_inputs(inputs: Iterable[str | Path]) -> list[Input]:
    """Files and folders (searched recursively for audio files, sorted) -> one :class:`Input` per file, in the
    order given, and one per input that does not exist or is a folder without audio.  Nothing raises: every
    input is accounted for.  (An empty name is a usage error that callers refuse before.)"""
    out: list[Input] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                out.append(Input(str(path), problem=f"{path}: folder holds no audio files "
                                                    f"({', '.join(AUDIO_EXTENSIONS)})"))
            out.extend(Input(str(f), f) for f in found)
        elif path.exists():
            out.append(Input(str(path), path))
        else:
            out.append(Input(str(path), problem=f"{path}: does not exist"))
    return out
