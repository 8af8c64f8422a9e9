import re

import numpy as np
import pytest
import soundfile as sf

from soundscene.errors import AudioError
from soundscene.core.audio import Input, expand_inputs
from soundscene.core.inference import SceneClassifier
from soundscene.training.synth import synthesize_scene


@pytest.fixture(scope="module")
def classifier(tiny_run):
    return SceneClassifier.from_file(tiny_run.model_path)


def _clips(n, seconds=1.5, sr=8000):
    return [synthesize_scene(s, sample_rate=sr, seconds=seconds, seed=100 + k)[None]
            for k, s in enumerate(["park", "metro", "rain", "street_traffic"] * n)][:n]


def test_batch_equals_one_by_one(classifier):
    clips = _clips(4)
    batch = classifier.classify_clips(clips)
    single = np.stack([classifier.classify_clips([c])[0] for c in clips])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-5)


def test_deterministic(classifier):
    clips = _clips(2)
    np.testing.assert_array_equal(classifier.classify_clips(clips), classifier.classify_clips(clips))


def test_waveform_at_another_rate_is_resampled(classifier):
    clip = synthesize_scene("metro", sample_rate=48000, seconds=1.5, seed=7)
    probs = classifier.predict_waveform(clip, sample_rate=48000)
    assert probs.shape == (len(classifier.classes),)
    with pytest.raises(AudioError, match="NaN"):
        classifier.predict_waveform(np.full(8000, np.nan, dtype=np.float32), sample_rate=8000)


def test_files_long_short_stereo_and_bad(classifier, tmp_path):
    long = synthesize_scene("rain", sample_rate=8000, seconds=6.0, seed=1)
    sf.write(str(tmp_path / "long.wav"), long, 8000)
    sf.write(str(tmp_path / "short.flac"), long[:3000], 8000)
    sf.write(str(tmp_path / "stereo.wav"), np.stack([long, long], 1)[:12000], 8000, subtype="PCM_24")
    (tmp_path / "bad.wav").write_bytes(b"nope")
    found = expand_inputs([tmp_path / "missing.wav", tmp_path])  # in the order given, folders sorted
    assert found[0] == Input(str(tmp_path / "missing.wav"), problem=f"{tmp_path / 'missing.wav'}: does not exist")
    files = [item.path for item in found[1:]]
    assert files == sorted(files) and all(item.problem is None for item in found[1:])
    preds = classifier.classify_files(files)
    assert [p.path for p in preds] == [str(f) for f in files]
    bad = [p for p in preds if p.error]
    assert len(bad) == 1 and "bad.wav" in bad[0].error
    good = [p for p in preds if not p.error]
    assert all(p.label in classifier.classes and abs(p.probabilities.sum() - 1) < 1e-4 for p in good)
    with pytest.raises(AudioError, match="bad.wav"):
        classifier.classify_file(tmp_path / "bad.wav")


def test_a_file_equals_its_waveform_and_a_short_file_is_one_padded_window(classifier, tmp_path):
    clip = synthesize_scene("metro", sample_rate=8000, seconds=1.0, seed=3)
    sf.write(str(tmp_path / "c.wav"), clip, 8000, subtype="FLOAT")
    result = classifier.classify_file(tmp_path / "c.wav")
    assert len(result.windows) == 1 and result.windows[0].end == pytest.approx(1.0)
    np.testing.assert_allclose(result.probabilities, classifier.classify_clips([clip])[0], atol=1e-6)
    np.testing.assert_allclose(result.probabilities, classifier.predict_waveform(clip, sample_rate=8000), atol=1e-6)


def test_each_window_is_normalised_as_a_training_clip(classifier, tmp_path):
    """A long file made of one clip repeated gives that clip's probabilities in every window."""
    clip = synthesize_scene("park", sample_rate=8000, seconds=1.5, seed=11)
    clip[:4000] *= 0.05  # a loud and a quiet half: a floor taken over the whole file would change the features
    sf.write(str(tmp_path / "long.wav"), np.tile(clip, 8), 8000, subtype="FLOAT")
    whole = SceneClassifier.from_file(classifier.path, hop_seconds=1.5).classify_file(tmp_path / "long.wav")
    expected = classifier.classify_clips([clip])[0]
    assert len(whole.windows) == 8
    for w in whole.windows:
        np.testing.assert_allclose(w.probabilities, expected, atol=1e-5)


def test_windows_hop_by_half_a_clip_and_the_end_is_always_seen(classifier):
    wave = synthesize_scene("rain", sample_rate=8000, seconds=4.0, seed=2)
    result = classifier.classify_waveform(wave, sample_rate=8000, overview=True)
    columns_per_second = 24 / classifier.window_seconds  # the picture spans the recording once, not per window
    assert result.overview.shape == (32, round(4.0 * columns_per_second))
    starts = [w.start for w in result.windows]
    assert starts == pytest.approx([0.0, 0.75, 1.5, 2.25, 2.5])  # the last one aligned with the end
    assert result.windows[-1].end == pytest.approx(4.0)
    np.testing.assert_allclose(result.probabilities, np.mean([w.probabilities for w in result.windows], 0))
    segments = result.segments()
    assert segments[0].start == 0 and segments[-1].end == pytest.approx(4.0)
    assert all(a.end == b.start and a.label != b.label for a, b in zip(segments, segments[1:]))


def test_long_files_are_read_in_blocks_at_any_rate(classifier, tmp_path, monkeypatch):
    import soundscene.core.audio as audio

    monkeypatch.setattr(audio, "BLOCK_SECONDS", 0.37)  # many blocks, none aligned with a window
    wave = synthesize_scene("street_traffic", sample_rate=44100, seconds=5.0, seed=4)
    sf.write(str(tmp_path / "a.wav"), np.stack([wave, wave * 0.5], 1), 44100, subtype="PCM_24")
    blocks = classifier.classify_file(tmp_path / "a.wav")
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 1000.0)
    whole = classifier.classify_file(tmp_path / "a.wav")
    np.testing.assert_allclose([w.probabilities for w in blocks.windows], [w.probabilities for w in whole.windows],
                               atol=1e-6)


def test_stream_decisions_do_not_depend_on_block_sizes(classifier):
    wave = np.concatenate([synthesize_scene(s, sample_rate=8000, seconds=3.0, seed=9) for s in ("rain", "metro")])
    whole = classifier.classify_waveform(wave, sample_rate=8000)
    rng = np.random.default_rng(0)
    for sizes in ([wave.size], [1] * 50 + [wave.size], list(rng.integers(1, 3000, 200))):
        stream = classifier.stream(input_rate=8000)
        decisions, pos = [], 0
        for n in sizes:
            decisions += stream.push(wave[pos:pos + n])
            pos += n
            if pos >= wave.size:
                break
        assert len(decisions) == 7  # 6 s: a decision every 0.75 s once 1.5 s are in
        np.testing.assert_allclose([d.probabilities for d in decisions],
                                   [w.probabilities for w in whole.windows[:7]], atol=1e-6)
        assert [d.time for d in decisions] == pytest.approx([1.5 + 0.75 * k for k in range(7)])


def test_stream_at_another_rate_and_channel_count(classifier):
    wave = synthesize_scene("park", sample_rate=48000, seconds=3.0, seed=5)
    stereo = np.stack([wave, wave])
    one = classifier.stream(input_rate=48000, channels=2).push(stereo)
    parts = classifier.stream(input_rate=48000, channels=2)
    many = [d for k in range(0, stereo.shape[1], 4801) for d in parts.push(stereo[:, k:k + 4801])]
    assert len(one) == len(many) >= 2  # the resampler holds back a few ms until more audio comes
    np.testing.assert_allclose([d.probabilities for d in one], [d.probabilities for d in many], atol=1e-6)


def test_hysteresis_keeps_the_scene_on_alternating_input(classifier):
    """Windows that alternate between two scenes must not make the reported scene flap."""
    stream = classifier.stream(input_rate=8000, smoothing=0.5, min_dwell_seconds=3.0)
    a, b = np.eye(len(classifier.classes))[:2] * 0.9 + 0.05
    w = np.zeros((1, classifier.window_samples), np.float32)
    decisions = [stream._decide(k * classifier.hop_samples, w, a if k % 2 == 0 else b) for k in range(12)]
    assert decisions[0].changed and not any(d.changed for d in decisions[1:])
    assert {d.label for d in decisions} == {classifier.classes[0]}
    # a lasting change is reported once, after the dwell time, with the previous scene
    later = [stream._decide((12 + k) * classifier.hop_samples, w, b) for k in range(8)]
    changes = [d for d in later if d.changed]
    assert len(changes) == 1 and changes[0].label == classifier.classes[1]
    assert changes[0].previous == classifier.classes[0]
    assert later.index(changes[0]) >= 3  # 3 s of dwell at a 0.75-s hop


def test_trained_model_recognises_fresh_clips(classifier):
    names = ["park", "metro", "rain", "street_traffic"]
    clips = [synthesize_scene(s, sample_rate=8000, seconds=1.5, seed=500 + k, difficulty=0.2)[None]
             for k, s in enumerate(names * 3)]
    probs = classifier.classify_clips(clips)
    predicted = [classifier.classes[k] for k in probs.argmax(1)]
    assert np.mean([p == t for p, t in zip(predicted, names * 3)]) > 0.5


def test_waveform_layout_and_empty_input_are_refused(tiny_run):
    from soundscene.core.inference import SceneClassifier

    clf = SceneClassifier.from_file(tiny_run.model_path)
    frames_channels = np.zeros((8000, 2), dtype=np.float32)
    with pytest.raises(AudioError, match=r"\(samples, channels\)"):
        clf.predict_waveform(frames_channels, sample_rate=8000)
    with pytest.raises(AudioError, match="samples > 0"):
        clf.predict_waveform(np.zeros(0, dtype=np.float32), sample_rate=8000)


# -- the window and hop have ranges; recordings shorter than the model's minimum are refused (issue 13) --------

@pytest.mark.parametrize("window, hop, message", [
    (1e5, None, r"--window 100000 s is outside 0\.2\.\.600 s \(from the model's audio\.min_seconds to 10 minutes\)"),
    (1e9, None, r"--window 1e\+09 s is outside 0\.2\.\.600 s"),
    (0.1, None, r"--window 0\.1 s is outside 0\.2\.\.600 s"),
    (float("nan"), None, r"--window nan is not a finite number; give a value in 0\.2\.\.600 s"),
    (float("inf"), None, r"--window inf is not a finite number; give a value in 0\.2\.\.600 s"),
    (0.5, 0.0001, r"--hop 0\.0001 s is outside 0\.025\.\.0\.5 s \(from 1/20 of the window, at least 10 ms, to "
                  r"the window\)"),
    (0.1 * 2, 0.001, r"--hop 0\.001 s is outside 0\.01\.\.0\.2 s"),  # and never under 10 ms
    (None, 2.0, r"--hop 2 s is outside 0\.075\.\.1\.5 s"),
    (None, float("nan"), r"--hop nan is not a finite number; give a value in 0\.075\.\.1\.5 s"),
])
def test_window_and_hop_out_of_range_are_refused_naming_the_option_and_the_range(classifier, window, hop, message):
    from soundscene.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{message}"):
        SceneClassifier.from_file(classifier.path, window_seconds=window, hop_seconds=hop)


def test_the_ends_of_the_window_and_hop_ranges_are_accepted(classifier):
    longest = SceneClassifier.from_file(classifier.path, window_seconds=600, hop_seconds=30)
    shortest = SceneClassifier.from_file(classifier.path, window_seconds=0.2, hop_seconds=0.01)
    assert (longest.window_seconds, longest.hop_seconds, shortest.hop_seconds) == (600, 30, 0.01)


ABSURD_WINDOWS = [
    (["--window", "1e5"], r"--window 100000 s is outside 0\.2\.\.600 s .*"),  # was killed by the kernel (22.8 GB)
    (["--window", "1e9"], r"--window 1e\+09 s is outside 0\.2\.\.600 s .*"),  # was a MemoryError traceback
    (["--window", "nan"], r"--window nan is not a finite number; give a value in 0\.2\.\.600 s .*"),
    (["--window", "0.5", "--hop", "0.0001"], r"--hop 0\.0001 s is outside 0\.025\.\.0\.5 s .*"),  # ran for minutes
]


def test_predict_refuses_an_absurd_window_or_hop_in_one_line(tiny_run, tmp_path):
    from helpers import run_cli_capped

    wave = synthesize_scene("rain", sample_rate=8000, seconds=5.0, seed=6)
    sf.write(str(tmp_path / "five.wav"), wave, 8000)
    results = run_cli_capped([["predict", tiny_run.model_path, tmp_path / "five.wav", *options]
                              for options, _ in ABSURD_WINDOWS])
    for (options, message), result in zip(ABSURD_WINDOWS, results):
        assert result["code"] == 2 and "Traceback" not in result["stderr"], (options, result["stderr"][-2000:])
        errors = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and re.fullmatch(f"error: {message}", errors[0]), result["stderr"]
        assert result["stdout"] == ""


def test_a_waveform_shorter_than_the_models_minimum_is_refused_as_a_file_is(classifier, tmp_path):
    """One rule: audio.min_seconds (0.2 s here) holds for waveforms as for files, in one line naming the length."""
    wave = synthesize_scene("park", sample_rate=8000, seconds=1.0, seed=8)
    with pytest.raises(AudioError, match=r"^<waveform>: 0\.05 s \(400 samples at 8000 Hz\) is shorter than the "
                                         r"model's minimum of 0\.2 s \(audio\.min_seconds\)$"):
        classifier.predict_waveform(wave[:400], sample_rate=8000)
    with pytest.raises(AudioError, match=r"^clip: 0\.1999 s \(1599 samples at 8000 Hz\) is shorter than"):
        classifier.classify_waveform(wave[:1599], sample_rate=8000, name="clip")  # not "0.20 s is shorter than 0.2"
    with pytest.raises(AudioError, match=r"0\.05 s \(2400 samples at 48000 Hz\)"):
        classifier.classify_waveform(np.zeros((2, 2400), np.float32) + 0.1, sample_rate=48000)
    assert classifier.classify_waveform(wave[:1600], sample_rate=8000).label in classifier.classes  # 0.2 s is enough
    sf.write(str(tmp_path / "short.wav"), wave[:400], 8000)
    with pytest.raises(AudioError, match="is shorter than the minimum of 0.2 s"):
        classifier.classify_file(tmp_path / "short.wav")


def test_release_1_names_are_gone(classifier):
    """predict_files and predict_waveforms were kept one release as deprecated aliases (README, "Python API")."""
    assert not hasattr(classifier, "predict_files") and not hasattr(classifier, "predict_waveforms")


def test_the_hop_is_at_least_a_twentieth_of_the_window(tiny_run):
    """No moment is scored more than 20 times: --window 0.5 --hop 0.01 took 17 s on a 5-s file."""
    from soundscene.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--hop 0\.01 s is outside 0\.025\.\.0\.5 s"):
        SceneClassifier.from_file(tiny_run.model_path, window_seconds=0.5, hop_seconds=0.01)
    assert SceneClassifier.from_file(tiny_run.model_path, window_seconds=0.5, hop_seconds=0.025).hop_seconds == 0.025
