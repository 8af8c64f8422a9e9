"""Real recordings from ../shared/data flow through the data layer (skipped, with the reason, when absent)."""

import pytest

from conftest import SHARED
from soundscene.core.audio import load_audio
from soundscene.training.data import load_manifest, split_manifest

ESC10 = SHARED / "esc10" / "labels.csv"
TUT = SHARED / "tut2018-samples" / "labels.csv"


@pytest.mark.skipif(not ESC10.is_file(), reason="../shared/data/esc10 is absent")
def test_esc10_manifest_folds_groups_and_ogg_with_spaces():
    m = load_manifest(ESC10)
    assert len(m) == 400 and len(m.classes) == 10
    assert set(m.class_counts().values()) == {40}
    assert {i.fold for i in m.items} == {1, 2, 3, 4, 5}
    assert all(i.group for i in m.items)  # from source_id
    assert " " in str(m.items[0].path)
    split = split_manifest(m, test_fold=5)
    assert len(split["test"]) == 80
    groups = {name: {i.group for i in part} for name, part in split.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    x = load_audio(m.items[0].path, sample_rate=22050)
    assert x.shape[0] == 1 and 3.0 < x.shape[1] / 22050 < 7.5


@pytest.mark.skipif(not TUT.is_file(), reason="../shared/data/tut2018-samples is absent")
def test_tut_clips_decode_as_48k_24bit_stereo():
    from soundscene.core.audio import audio_info

    m = load_manifest(TUT)
    assert len(m.classes) == 10
    info = audio_info(m.items[0].path)
    assert (info.sample_rate, info.channels, info.subtype) == (48000, 2, "PCM_24")
    assert info.duration_seconds == pytest.approx(10.0)
    stereo = load_audio(m.items[0].path, sample_rate=22050, channels=2)
    assert stereo.shape == (2, 220500)
