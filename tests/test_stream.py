"""Live input: raw PCM decoding and the listen loop (microphone-free)."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from soundscene.errors import SoundsceneError
from soundscene.core.inference import SceneClassifier
from soundscene.apps.listen import listen, microphone_blocks, pcm_blocks
from soundscene.training.synth import synthesize_scene


@pytest.mark.parametrize("fmt, dtype, scale", [("s16le", "<i2", 32767), ("s32le", "<i4", 2**31 - 1),
                                               ("f32le", "<f4", 1.0)])
def test_pcm_formats_decode_to_full_scale_floats(fmt, dtype, scale):
    x = np.array([[0.5, -0.25], [-1.0, 0.125], [0.0, 0.75]], dtype=np.float64)  # (frames, channels)
    raw = (x * scale).astype(dtype).tobytes()
    blocks = list(pcm_blocks(io.BytesIO(raw + b"\x01"), rate=4, channels=2, sample_format=fmt, block_seconds=0.5))
    out = np.concatenate(blocks, axis=1)
    np.testing.assert_allclose(out, x.T, atol=1e-4)  # the trailing partial frame is dropped


def test_24_bit_pcm_is_sign_extended():
    values = np.array([4194304, -8388608, -1], dtype=np.int32)
    raw = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in values)
    out = np.concatenate(list(pcm_blocks(io.BytesIO(raw), rate=8000, channels=1, sample_format="s24le")), axis=1)
    np.testing.assert_allclose(out[0], [0.5, -1.0, -1 / 8388608])


def test_listen_equals_the_file_path_whatever_the_blocks(tiny_run):
    clf = SceneClassifier.from_file(tiny_run.model_path)
    wave = synthesize_scene("rain", sample_rate=16000, seconds=4.0, seed=3)
    records = []
    made = listen(clf, (wave[None, k:k + 1234] for k in range(0, wave.size, 1234)), input_rate=16000, channels=1,
                  on_decision=[records.append])
    whole = clf.classify_waveform(wave, sample_rate=16000)
    assert made == len(records) == 4  # 1.5, 2.25, 3.0, 3.75 s (the end-aligned window is for files only)
    assert {"time", "label", "confidence", "probabilities", "changed", "level_dbfs"} <= set(records[0])
    assert records[0]["changed"] and abs(sum(records[0]["probabilities"].values()) - 1) < 1e-4
    np.testing.assert_allclose(records[0]["probabilities"][clf.classes[0]], whole.windows[0].probabilities[0],  # 4 decimals
                               atol=5e-5)


def test_no_microphone_library_or_device_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if it were not installed
    with pytest.raises(SoundsceneError, match="no microphone input.*--stdin"):
        next(microphone_blocks(rate=16000))


def test_listen_command_reads_raw_pcm_from_stdin(tiny_run):
    wave = synthesize_scene("metro", sample_rate=48000, seconds=3.2, seed=1)
    pcm = (np.stack([wave, wave], 1) * 32767).astype("<i2").tobytes()
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "listen", str(tiny_run.model_path), "--stdin",
                             "--rate", "48000", "--channels", "2", "--sample-format", "s16le"],
                            input=pcm, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [round(d["time"], 2) for d in lines] == [1.5, 2.25, 3.0]
    assert lines[0]["changed"] and lines[0]["label"] in lines[0]["probabilities"]
    bad = subprocess.run([sys.executable, "-m", "soundscene.cli", "listen", str(tiny_run.model_path), "--stdin",
                          "--sample-format", "u8"], input=b"", capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"invalid choice" in bad.stderr


def test_listen_refuses_floats_beyond_full_scale_as_predict_does(tiny_run):
    """f32le samples of ±4,000 (integers written as floats) are one line and exit 2, as predict refuses such a
    file; the decisions made before them were printed."""
    wave = synthesize_scene("metro", sample_rate=8000, seconds=2.0, seed=1).astype("<f4")
    pcm = np.concatenate([wave, np.full(800, 4000.0, "<f4")]).tobytes()
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "listen", str(tiny_run.model_path), "--stdin",
                             "--rate", "8000", "--sample-format", "f32le"], input=pcm, capture_output=True,
                            timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 2 and "samples reach 4e+03" in err and err.count("\n") == 1, err
    assert len(result.stdout.decode().splitlines()) >= 1


@pytest.mark.parametrize("option, value", [("smoothing", float("nan")), ("smoothing", 0.0), ("smoothing", 1.5),
                                           ("min_dwell_seconds", -1.0), ("min_dwell_seconds", float("nan")),
                                           ("min_dwell_seconds", 1e9)])
def test_stream_settings_have_ranges(tiny_run, option, value):
    clf = SceneClassifier.from_file(tiny_run.model_path)
    name = {"smoothing": "--smoothing", "min_dwell_seconds": "--dwell"}[option]
    with pytest.raises(SoundsceneError, match=f"^{name} .* is outside"):
        clf.stream(input_rate=16000, **{option: value})


def test_a_microphone_that_stops_or_stalls_is_one_line():
    """listen's microphone source ends with one SoundsceneError when PortAudio's stream stops (a device
    unplugged) or gives nothing for INPUT_STALL_SECONDS, instead of waiting for ever."""
    import queue

    from soundscene.apps import listen as listen_module
    from soundscene.errors import SoundsceneError

    class Stream:  # what _until_silent reads of a sounddevice.InputStream
        active = True

    blocks, stream = queue.Queue(), Stream()
    blocks.put(np.zeros((1, 10), np.float32))
    source = listen_module._until_silent(blocks, stream)
    assert next(source).shape == (1, 10)
    stream.active = False
    with pytest.raises(SoundsceneError, match="microphone stopped"):
        next(source)
    stream.active = True
    old = listen_module.INPUT_STALL_SECONDS
    listen_module.INPUT_STALL_SECONDS = 1.0
    try:
        with pytest.raises(SoundsceneError, match="no audio from the microphone for 1 s"):
            next(listen_module._until_silent(queue.Queue(), stream))
    finally:
        listen_module.INPUT_STALL_SECONDS = old
