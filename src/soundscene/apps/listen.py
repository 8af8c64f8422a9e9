"""Live scene classification: audio from a microphone or raw PCM on stdin -> a decision every hop.

:func:`listen` drives a :class:`soundscene.core.stream.StreamClassifier` from a
source of blocks and hands each decision's record (the ``decision`` record of
:mod:`soundscene.core.records`) to callbacks: print it as a JSON line, publish
it over MQTT.  ``soundscene eq-live`` takes its ambient input from the same
:func:`live_source`.

Sources (:func:`live_source` picks one):

* :func:`pcm_blocks` — raw interleaved PCM from a binary stream (``arecord``,
  ``ffmpeg -f s16le -``, a socket): ``s16le``, ``s24le``, ``s32le`` or
  ``f32le``, any rate and channel count;
* :func:`microphone_blocks` — the default input device through sounddevice
  (PortAudio), imported only when used; a missing library or device is one
  clear line.
"""

from __future__ import annotations

import queue
import sys
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from ..core.inference import SceneClassifier, StreamClassifier
from ..config import LEVEL_INTERVAL
from ..core.records import dumps
from ..errors import AudioError, SoundsceneError

SAMPLE_FORMATS = {"s16le": ("<i2", 2, 32768.0), "s24le": (None, 3, 8388608.0), "s32le": ("<i4", 4, 2147483648.0),
                  "f32le": ("<f4", 4, 1.0)}
LIVE_BLOCK_SECONDS = 0.1  # live input is read in blocks this long
INPUT_STALL_SECONDS = 10.0  # a microphone that gives nothing this long is gone
DEFAULT_LEVEL_INTERVAL = 60.0  # seconds of audio per levels message (listen --level-interval)


def pcm_blocks(stream: BinaryIO, *, rate: int, channels: int, sample_format: str = "s16le",
               block_seconds: float = LIVE_BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Decode raw interleaved little-endian PCM into ``(channels, n)`` float32 blocks (full scale ±1).

    A trailing partial frame at the end of the stream is dropped.
    """
    if sample_format not in SAMPLE_FORMATS:
        raise SoundsceneError(f"unknown sample format {sample_format!r}; use one of {', '.join(SAMPLE_FORMATS)}")
    if not 1 <= channels <= 16:
        raise SoundsceneError(f"--channels must be in 1..16, got {channels}")
    dtype, width, scale = SAMPLE_FORMATS[sample_format]
    frame = width * channels
    want = max(1, int(rate * block_seconds)) * frame
    pending = b""
    while True:
        chunk = stream.read(want - len(pending))
        if not chunk:
            break
        pending += chunk
        if len(pending) < want:
            continue
        yield _decode(pending, dtype, width, scale, channels)
        pending = b""
    usable = len(pending) - len(pending) % frame
    if usable:
        yield _decode(pending[:usable], dtype, width, scale, channels)


def _decode(raw: bytes, dtype: str | None, width: int, scale: float, channels: int) -> np.ndarray:
    if dtype is None:  # 24-bit: three bytes, sign-extended
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        values = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
    else:
        values = np.frombuffer(raw, dtype)
    out = (values.astype(np.float32) / scale).reshape(-1, channels).T
    return np.ascontiguousarray(out)


def live_source(*, stdin: bool, rate: int, channels: int, sample_format: str = "s16le",
                device: str | None = None) -> Iterator[np.ndarray]:
    """The blocks of live input: raw PCM on this process's stdin, or the microphone (``device``: a name or an
    index given as digits)."""
    if stdin:
        return pcm_blocks(sys.stdin.buffer, rate=rate, channels=channels, sample_format=sample_format)
    chosen = int(device) if device and device.isdigit() else device
    return microphone_blocks(rate=rate, channels=channels, device=chosen)


def microphone_blocks(*, rate: int, channels: int = 1, block_seconds: float = LIVE_BLOCK_SECONDS,
                      device: str | int | None = None) -> Iterator[np.ndarray]:
    """``(channels, n)`` float32 blocks from an input device (sounddevice / PortAudio), until interrupted."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the module is there but PortAudio is not
        raise SoundsceneError(f"no microphone input: {str(exc).splitlines()[0]} (pip install sounddevice, and "
                              "the PortAudio library, e.g. apt-get install libportaudio2; or feed raw PCM with "
                              "--stdin)") from None
    blocks: queue.Queue = queue.Queue(maxsize=100)

    def callback(data, frames, time, status):  # runs on PortAudio's thread
        try:
            blocks.put_nowait(np.ascontiguousarray(data.T, dtype=np.float32))
        except queue.Full:
            pass

    try:
        stream = sounddevice.InputStream(samplerate=rate, channels=channels, dtype="float32", device=device,
                                         blocksize=max(1, int(rate * block_seconds)), callback=callback)
    except Exception as exc:  # PortAudioError and ValueError for a missing or unfit device
        raise SoundsceneError(f"cannot open the microphone ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                              "check the input device, or feed raw PCM with --stdin") from None
    with stream:
        yield from _until_silent(blocks, stream)


def _until_silent(blocks: queue.Queue, stream) -> Iterator[np.ndarray]:
    """The blocks of an open input stream; one clear line when the device stops (unplugged) or gives nothing
    for :data:`INPUT_STALL_SECONDS` (a unit's Restart= then starts the sensor again)."""
    waited = 0.0
    while True:
        try:
            block = blocks.get(timeout=0.5)
        except queue.Empty:
            waited += 0.5
            if not stream.active:
                raise SoundsceneError("the microphone stopped (unplugged?); nothing more can be heard") from None
            if waited >= INPUT_STALL_SECONDS:
                raise SoundsceneError(f"no audio from the microphone for {INPUT_STALL_SECONDS:g} s") from None
            continue
        waited = 0.0
        yield block


def speaker(*, device: str | int | None = None):
    """A ``play(block (samples, channels), sample_rate)`` callable writing to the default output device
    (sounddevice, opened on the first block); a missing library or device is one clear line."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise SoundsceneError(f"no audio output: {str(exc).splitlines()[0]} (pip install sounddevice and the "
                              "PortAudio library; or write to a file with -o)") from None
    state = {}

    def play(block: np.ndarray, sample_rate: int) -> None:
        if "stream" not in state:
            try:
                state["stream"] = sounddevice.OutputStream(samplerate=sample_rate, channels=block.shape[1],
                                                           dtype="float32", device=device)
                state["stream"].start()
            except Exception as exc:  # PortAudioError, ValueError for a missing or unfit device
                raise SoundsceneError(f"cannot open the audio output ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0]}); write to a file with -o") from None
        state["stream"].write(np.ascontiguousarray(block, dtype=np.float32))

    return play


def listen(classifier: SceneClassifier, blocks: Iterable[np.ndarray], *, input_rate: int, channels: int,
           on_decision: Iterable[Callable[[dict], None]] = (), smoothing: float = 0.5,
           min_dwell_seconds: float | None = None, on_levels: Iterable[Callable[[dict, float], None]] = (),
           level_interval: float = DEFAULT_LEVEL_INTERVAL) -> int:
    """Run the stream classifier over ``blocks``; call each ``on_decision`` with every decision's record, and
    every ``level_interval`` seconds of audio each ``on_levels`` with that interval's ``levels`` record and its
    length in seconds (the rest at the end, too).

    Returns the number of decisions made.  The end of the blocks flushes what
    the resampler still holds.
    """
    problem = LEVEL_INTERVAL.refusal(level_interval)
    if problem:
        raise SoundsceneError(f"--level-interval {problem}")
    stream: StreamClassifier = classifier.stream(input_rate=input_rate, channels=channels, smoothing=smoothing,
                                                 min_dwell_seconds=min_dwell_seconds)
    on_levels = list(on_levels) if stream.meter is not None else []
    made = 0

    def hand_on_levels(final: bool = False) -> None:
        meter = stream.meter
        if on_levels and (meter.interval_seconds >= level_interval - 1e-9 or (final and meter.interval_seconds)):
            seconds = meter.interval_seconds
            record = meter.take_interval().to_record()
            for callback in on_levels:
                callback(record, seconds)

    def hand_on(decisions) -> None:
        nonlocal made
        for decision in decisions:
            record = decision.to_record(classifier.classes)
            for callback in on_decision:
                callback(record)
            made += 1

    try:
        for block in blocks:
            hand_on(stream.push(block))
            hand_on_levels()
        hand_on(stream.finish())
        hand_on_levels(final=True)
    except AudioError as exc:
        raise SoundsceneError(f"live input: {exc}") from None
    return made


def print_json_line(record: dict, *, out=None) -> None:
    """Write one record as one strict JSON line and flush (for pipes)."""
    out = out or sys.stdout
    out.write(dumps(record) + "\n")
    out.flush()
