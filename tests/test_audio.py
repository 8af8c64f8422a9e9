"""Reading audio (soundscene.core.audio): every format, bit depth, rate and channel count decodes to the same
signal; damaged, silent, too short or too long files are refused in one line naming the file."""

import numpy as np
import pytest
import soundfile as sf

from helpers import SHARED, write_tone
from soundscene.core.audio import audio_info, fix_length, load_audio, load_clip, read_blocks, resample
from soundscene.config import AudioConfig
from soundscene.errors import AudioError

TUT = SHARED / "tut2018-samples" / "labels.csv"


@pytest.mark.parametrize("subtype, tolerance", [
    ("PCM_U8", 1e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7),
])
def test_wav_bit_depths_decode_to_the_same_signal(tmp_path, subtype, tolerance):
    path = tmp_path / f"tone_{subtype}.wav"
    written = write_tone(path, subtype=subtype)
    x = load_audio(path, sample_rate=16000)
    assert x.dtype == np.float32 and x.shape == (1, 16000)
    assert np.max(np.abs(x[0] - written[:, 0])) < tolerance


@pytest.mark.parametrize("ext, subtype", [("flac", "PCM_24"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_compressed_formats(tmp_path, ext, subtype):
    path = tmp_path / f"tone.{ext}"
    written = write_tone(path, subtype=subtype)
    x = load_audio(path, sample_rate=16000)
    assert x.shape == (1, 16000)
    assert np.corrcoef(x[0], written[:, 0])[0, 1] > 0.99


def test_stereo_is_mixed_down_or_kept(tmp_path):
    path = tmp_path / "stereo.wav"
    written = write_tone(path, channels=2, subtype="FLOAT")
    mono = load_audio(path, sample_rate=16000)
    np.testing.assert_allclose(mono[0], written.mean(axis=1), atol=1e-6)
    both = load_audio(path, sample_rate=16000, channels=2)
    np.testing.assert_allclose(both, written.T, atol=1e-6)
    with pytest.raises(AudioError, match="has 2 channels but the configuration expects 4"):
        load_audio(path, sample_rate=16000, channels=4)


def test_multichannel_downmix(tmp_path):
    path = tmp_path / "six.wav"
    write_tone(path, channels=6, subtype="PCM_24")
    assert load_audio(path, sample_rate=16000).shape == (1, 16000)


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 48000, 96000])
def test_odd_rates_are_resampled_to_the_configured_rate(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    write_tone(path, sample_rate=rate, seconds=2.0, frequency=300.0)
    x = load_audio(path, sample_rate=22050)
    assert x.shape == (1, 44100)
    spectrum = np.abs(np.fft.rfft(x[0]))
    assert abs(np.argmax(spectrum) * 22050 / x.shape[1] - 300.0) < 1.0


def test_resample_identity_and_length():
    x = np.random.default_rng(0).standard_normal((2, 48000)).astype(np.float32)
    assert resample(x, orig_rate=48000, target_rate=48000) is not None
    assert resample(x, orig_rate=48000, target_rate=16000).shape == (2, 16000)


def test_missing_empty_folder_and_corrupt_files(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav", sample_rate=16000)
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path, sample_rate=16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty, sample_rate=16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(junk, sample_rate=16000)


def test_header_only_wav_has_no_frames(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(str(path), np.zeros((0, 1)), 16000)
    with pytest.raises(AudioError, match="no audio frames|empty|not a readable"):
        load_audio(path, sample_rate=16000)


def test_truncated_wav_is_detected(tmp_path):
    path = tmp_path / "cut.wav"
    write_tone(path, sample_rate=48000, channels=2, subtype="PCM_24")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path, sample_rate=48000)


def test_nan_samples_are_refused(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.full((1600, 1), 0.1, dtype=np.float32)
    data[100] = np.nan
    sf.write(str(path), data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(path, sample_rate=16000)


def test_too_short_silent_and_too_long(tmp_path):
    short = tmp_path / "short.wav"
    write_tone(short, seconds=0.1)
    with pytest.raises(AudioError, match="shorter than the minimum"):
        load_audio(short, sample_rate=16000, min_seconds=0.5)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros((16000, 1)), 16000)
    with pytest.raises(AudioError, match="silence"):
        load_audio(silent, sample_rate=16000)
    long = tmp_path / "long.wav"
    write_tone(long, seconds=3.0)
    with pytest.raises(AudioError, match="longer than audio.max_seconds"):
        load_audio(long, sample_rate=16000, max_seconds=2.0)


def test_fix_length_crops_tiles_and_pads():
    x = np.arange(1, 5, dtype=np.float32)[None]
    np.testing.assert_array_equal(fix_length(x, length=2), [[1, 2]])
    np.testing.assert_array_equal(fix_length(x, length=10, pad_mode="repeat"), [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2]])
    np.testing.assert_array_equal(fix_length(x, length=6, pad_mode="zeros"), [[1, 2, 3, 4, 0, 0]])


def test_load_clip_uses_the_config(tmp_path):
    path = tmp_path / "a.wav"
    write_tone(path, sample_rate=44100, seconds=1.0, channels=2)
    clip = load_clip(path, AudioConfig(sample_rate=8000, clip_seconds=2.5))
    assert clip.shape == (1, 20000)
    whole = load_clip(path, AudioConfig(sample_rate=8000, clip_seconds=0.5), fixed_length=False)
    assert whole.shape == (1, 8000)


def test_audio_info(tmp_path):
    path = tmp_path / "i.wav"
    write_tone(path, sample_rate=48000, seconds=0.5, channels=2, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (48000, 2, 24000)
    assert info.duration_seconds == pytest.approx(0.5)


def test_absurd_sample_rates_are_refused_before_any_work(tmp_path):
    from soundscene.core.audio import audio_info

    path = tmp_path / "one_hz.wav"
    sf.write(str(path), np.full(3000, 0.1, dtype=np.float32), 1, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"sample rate of 1 Hz, outside 1000\.\.768000 Hz"):
        audio_info(path)
    with pytest.raises(AudioError, match="1 Hz"):
        load_audio(path, sample_rate=22050)


@pytest.mark.parametrize("peak", [1e19, 1e30, 5e3])
def test_samples_far_beyond_full_scale_are_refused_not_turned_into_nan(tmp_path, peak):
    path = tmp_path / "huge.wav"
    sf.write(str(path), (np.sin(np.arange(16000)) * peak).astype(np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"huge\.wav: samples reach .*beyond ±1000"):
        load_audio(path, sample_rate=16000)
    ok = tmp_path / "hot.wav"  # a float file a little over full scale is fine
    sf.write(str(ok), (np.sin(np.arange(16000)) * 2.5).astype(np.float32), 16000, subtype="FLOAT")
    assert np.abs(load_audio(ok, sample_rate=16000)).max() > 2


def test_decoder_chatter_on_stderr_is_swallowed(capfd):
    import os

    from soundscene.core.audio import quiet_decoder

    with quiet_decoder():
        os.write(2, b"Warning: Xing stream size off by more than 1%\n")
    os.write(2, b"ours\n")
    assert capfd.readouterr().err == "ours\n"


def test_a_fixed_length_clip_reads_only_what_it_needs(tmp_path, monkeypatch):
    from soundscene.core.audio import load_clip
    from soundscene.config import AudioConfig

    path = tmp_path / "long.wav"
    write_tone(path, sample_rate=16000, seconds=20.0)
    asked = []
    real_read = sf.read
    monkeypatch.setattr(sf, "read", lambda *a, **k: asked.append(k.get("frames")) or real_read(*a, **k))
    clip = load_clip(path, AudioConfig(sample_rate=8000, clip_seconds=2.0))
    assert clip.shape == (1, 16000) and asked == [int(2.5 * 16000)]
    whole = load_audio(path, sample_rate=8000)
    np.testing.assert_allclose(clip, whole[:, :16000], atol=1e-6)  # the same samples as cutting the whole file


@pytest.mark.skipif(not TUT.is_file(), reason="../shared/data/tut2018-samples is absent")
def test_tut_clips_decode_as_48k_24bit_stereo():
    from soundscene.training.data import load_manifest

    m = load_manifest(TUT)
    assert len(m.classes) == 10
    info = audio_info(m.items[0].path)
    assert (info.sample_rate, info.channels, info.subtype) == (48000, 2, "PCM_24")
    assert info.duration_seconds == pytest.approx(10.0)
    stereo = load_audio(m.items[0].path, sample_rate=22050, channels=2)
    assert stereo.shape == (2, 220500)


@pytest.mark.parametrize("cut", [0.5, 0.9, "last page"])
def test_a_truncated_ogg_is_refused_in_one_line(tmp_path, cut):
    """libsndfile reads an Ogg file cut short up to the cut without a word; the stream's missing last page
    (end-of-stream flag) or a page cut in half gives it away."""
    from soundscene.core.audio import check_length

    wave = (0.2 * np.random.default_rng(0).standard_normal(20 * 22050)).astype(np.float32)  # many Ogg pages
    whole = tmp_path / "whole.ogg"
    sf.write(str(whole), wave, 22050, format="OGG", subtype="VORBIS")
    assert load_audio(whole, sample_rate=22050).shape[-1] > 22050  # a whole stream reads as before
    data = whole.read_bytes()
    end = data.rfind(b"OggS") if cut == "last page" else int(len(data) * cut)
    cut_file = tmp_path / "cut.ogg"
    cut_file.write_bytes(data[:end])
    with pytest.raises(AudioError, match=r"cut\.ogg: truncated: the Ogg stream ends without its last page"):
        load_audio(cut_file, sample_rate=22050)
    with pytest.raises(AudioError, match="truncated"):
        check_length(audio_info(cut_file))


def test_too_short_names_enough_digits_to_see_why(tmp_path):
    from soundscene.core.audio import check_length

    path = tmp_path / "short.wav"
    sf.write(str(path), np.full(499, 0.1, np.float32), 1000)  # 0.499 s
    with pytest.raises(AudioError, match=r"0\.499 s is shorter than the minimum of 0\.5 s"):
        check_length(audio_info(path), min_seconds=0.5)


def test_reading_blocks_leaves_the_process_stderr_alone(tmp_path, monkeypatch):
    """quiet_decoder redirects descriptor 2 for the whole process: opening a file uses it, reading its blocks
    does not (a long recording is read in thousands of blocks, and other threads write to stderr meanwhile)."""
    import contextlib

    from soundscene.core import audio

    path = tmp_path / "tone.wav"
    sf.write(str(path), np.zeros(48000, np.float32), 16000)
    entered = []

    @contextlib.contextmanager
    def counting():
        entered.append(1)
        yield

    monkeypatch.setattr(audio, "quiet_decoder", counting)
    with audio.AudioReader(path) as reader:
        opened = len(entered)
        blocks = list(reader.blocks(1000))
    assert len(blocks) == 48 and len(entered) == opened


@pytest.mark.parametrize("damage", ["overwritten", "inserted"])
def test_an_ogg_file_with_damaged_bytes_in_the_middle_is_refused(tmp_path, damage):
    """libsndfile decodes such an OGG without a word (and the frame count still matches); each page's checksum
    and the pages' continuity are checked, so it is one line, as a damaged FLAC or MP3 is."""
    from soundscene.core.audio import load_audio

    t = np.arange(16000 * 20) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(1).standard_normal(t.size)
    good = tmp_path / "good.ogg"
    sf.write(str(good), audio.astype(np.float32), 16000, format="OGG", subtype="VORBIS")
    data = good.read_bytes()
    noise = bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8))
    mid = len(data) // 2
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(data[:mid] + noise + data[mid + (2000 if damage == "overwritten" else 0):])
    assert load_audio(good, sample_rate=16000).shape[-1] == t.size
    assert sf.info(str(bad)).frames == t.size  # libsndfile alone sees nothing wrong
    with pytest.raises(AudioError, match=r"bad\.ogg: damaged Ogg (page|stream) at byte \d+") as caught:
        load_audio(bad, sample_rate=16000)
    assert "\n" not in str(caught.value)
    with pytest.raises(AudioError, match="damaged Ogg"):
        list(read_blocks(audio_info(bad)))
