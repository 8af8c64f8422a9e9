import numpy as np
import pytest
import soundfile as sf

from soundscene.errors import AudioError
from soundscene.inference import SceneClassifier, expand_inputs
from soundscene.synth import synthesize_scene


@pytest.fixture(scope="module")
def classifier(tiny_run):
    return SceneClassifier.from_file(tiny_run.model_path)


def _clips(n, seconds=1.5, sr=8000):
    return [synthesize_scene(s, sample_rate=sr, seconds=seconds, seed=100 + k)[None]
            for k, s in enumerate(["park", "metro", "rain", "street_traffic"] * n)][:n]


def test_batch_equals_one_by_one(classifier):
    clips = _clips(4)
    batch = classifier.predict_waveforms(clips)
    single = np.stack([classifier.predict_waveforms([c])[0] for c in clips])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-5)


def test_deterministic(classifier):
    clips = _clips(2)
    np.testing.assert_array_equal(classifier.predict_waveforms(clips), classifier.predict_waveforms(clips))


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
    files = expand_inputs([tmp_path])
    preds = classifier.predict_files(files, batch_size=2)
    assert [p.path for p in preds] == [str(f) for f in files]
    bad = [p for p in preds if p.error]
    assert len(bad) == 1 and "bad.wav" in bad[0].error
    good = [p for p in preds if not p.error]
    assert all(p.label in classifier.classes and abs(sum(p.probabilities.values()) - 1) < 1e-4 for p in good)
    with pytest.raises(AudioError, match="bad.wav"):
        classifier.predict_file(tmp_path / "bad.wav")


def test_trained_model_recognises_fresh_clips(classifier):
    names = ["park", "metro", "rain", "street_traffic"]
    clips = [synthesize_scene(s, sample_rate=8000, seconds=1.5, seed=500 + k, difficulty=0.2)[None]
             for k, s in enumerate(names * 3)]
    probs = classifier.predict_waveforms(clips)
    predicted = [classifier.classes[k] for k in probs.argmax(1)]
    assert np.mean([p == t for p, t in zip(predicted, names * 3)]) > 0.5
