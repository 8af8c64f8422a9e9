"""The timeline of a recording: framing, windows in bounded memory, silence, segments."""

import numpy as np
import pytest

from soundscene.core.inference import SceneClassifier
from soundscene.core.records import Segment, Window, merge_segments
from soundscene.core.timeline import Framer
from soundscene.training.synth import synthesize_scene


@pytest.fixture(scope="module")
def classifier(tiny_run):
    return SceneClassifier.from_file(tiny_run.model_path, hop_seconds=0.5)


def test_framer_cuts_any_blocks_into_the_same_windows():
    x = np.arange(100, dtype=np.float32)[None]
    whole = list(Framer(30, 20, 1).push(x))
    framer = Framer(30, 20, 1)
    pieces = [w for k in range(0, 100, 7) for w in framer.push(x[:, k:k + 7])]
    assert [s for s, _ in whole] == [s for s, _ in pieces] == [0, 20, 40, 60]
    for (_, a), (_, b) in zip(whole, pieces):
        np.testing.assert_array_equal(a, b)


def test_each_window_owns_its_probabilities(classifier):
    """A window must not keep the network's whole output buffer alive: thousands of such small, long-lived
    views between large, short-lived blocks made memory grow with a recording's length (about +0.2 GB an
    hour before; flat now, see benchmarks/bench_deploy.py --hours 6)."""
    wave = synthesize_scene("rain", sample_rate=8000, seconds=8.0, seed=2)
    windows = classifier.classify_waveform(wave, sample_rate=8000).windows
    assert len(windows) > 8
    for w in windows:
        assert w.probabilities.base is None and w.probabilities.flags.owndata
        assert w.probabilities.shape == (len(classifier.classes),)


def test_silent_windows_are_not_classified_and_not_averaged(classifier):
    rng = np.random.default_rng(1)
    sound = synthesize_scene("metro", sample_rate=8000, seconds=3.0, seed=5)
    hush = 0.05 + rng.standard_normal(8000 * 4).astype(np.float32) * 1e-5  # a DC offset and -100 dBFS noise
    result = classifier.classify_waveform(np.concatenate([hush, sound]), sample_rate=8000)
    silent = [w for w in result.windows if w.silent]
    heard = [w for w in result.windows if not w.silent]
    assert silent and heard and all(w.probabilities is None and w.level_dbfs > -30 for w in silent)
    np.testing.assert_allclose(result.probabilities, np.mean([w.probabilities for w in heard], axis=0), atol=1e-6)
    assert result.segments()[0].silent and result.segments()[0].label is None
    assert "silent" in result.warning and result.label in classifier.classes
    record = result.to_record()
    assert record["windows"][0] == {**record["windows"][0], "label": None, "confidence": None,
                                    "probabilities": None, "silent": True}
    everything_quiet = classifier.classify_waveform(hush, sample_rate=8000)
    assert everything_quiet.label is None and everything_quiet.probabilities is None
    assert everything_quiet.warning.startswith("silent: every window")
    louder = SceneClassifier.from_file(classifier.path, silence_dbfs=-120)
    assert louder.classify_waveform(hush, sample_rate=8000).label in classifier.classes  # the threshold is a knob


def test_silent_stream_decisions_leave_the_scene_as_it_was(classifier):
    stream = classifier.stream(input_rate=8000)
    sound = synthesize_scene("park", sample_rate=8000, seconds=3.0, seed=1)
    heard = stream.push(sound)
    quiet = stream.push(np.zeros(8000 * 3, np.float32))
    assert heard and not any(d.silent for d in heard)
    assert quiet and all(d.silent and d.label is None and not d.changed for d in quiet[-2:])
    assert stream.label == heard[-1].label  # the reported scene is still the last one heard
    record = quiet[-1].to_record(classifier.classes)
    assert (record["label"], record["probabilities"], record["silent"]) == (None, None, True)


def test_segments_cover_the_recording_and_mark_silence():
    classes = ["a", "b"]
    windows = [Window(0, 2, np.array([0.9, 0.1])), Window(1, 3, np.array([0.8, 0.2])), Window(2, 4, None),
               Window(3, 5, np.array([0.3, 0.7]))]
    assert merge_segments(windows, classes, 5.0) == [Segment(0.0, 2.5, "a", pytest.approx(0.85)),
                                                     Segment(2.5, 3.5, None, None), Segment(3.5, 5.0, "b", 0.7)]


def test_the_overview_of_a_recording_shorter_than_its_first_column(tiny_run):
    """A 0.3-s recording in a 30-s window: the picture still has a column (it had none, and plotting failed)."""
    clf = SceneClassifier.from_file(tiny_run.model_path, window_seconds=30)
    wave = synthesize_scene("rain", sample_rate=8000, seconds=0.3, seed=3)
    result = clf.classify_waveform(wave, sample_rate=8000, overview=True)
    assert result.overview.ndim == 2 and result.overview.shape[1] >= 1


def test_silence_does_not_count_as_time_a_new_scene_led(classifier):
    """Hysteresis is left as it was: a scene that led for one hop before a long silence must lead again."""
    stream = classifier.stream(input_rate=8000, min_dwell_seconds=2.0, smoothing=1.0)
    stream._candidate, stream._candidate_since = "metro", 0.0  # a scene gaining on the reported one ...
    stream.push(np.zeros(8000 * 4, np.float32))  # ... then silence
    assert stream._candidate is None
