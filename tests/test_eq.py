"""The scene equalizer: filter accuracy, clipping, crossfades, block processing, presets, files, plot.

Tolerances (measured values in brackets, all presets, 8..192 kHz):
* designed response at the kept band centres vs the requested gains, after removing preamp + auto-gain:
  0.01 dB [<= 0.001 dB, the correction's stopping rule]; the graphic-EQ correction makes the cascade,
  not each filter, hit its target.
* a settled sine through the block processor, same comparison: 0.02 dB [< 1e-3 dB].
* peak magnitude response after auto-gain, on a grid 12x denser than the design's: <= 0.001 dB [1e-5 dB].
* block-wise vs whole processing: 1e-6 [float32 rounding, in practice 0].
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import chirp, sosfreqz, square

from soundscene.apps import eq
from soundscene.apps.eq import limiter
from soundscene.errors import AudioError, ConfigError

RNG = np.random.default_rng(7)
SMOOTH = [eq.Curve(np.clip(np.cumsum(RNG.normal(0, 3, 10)), -12, 12), RNG.uniform(-3, 3)) for _ in range(5)]


def _db(x):
    return 20 * np.log10(np.abs(x))


def _expected_db(curve, sample_rate):
    """Requested gains at the kept centres plus preamp and auto-gain."""
    n = len(eq.band_centres(sample_rate))
    return np.array(curve.gains_db[:n]) + curve.preamp_db + eq.curve_sos(curve, sample_rate=sample_rate)[1]


@pytest.mark.parametrize("sample_rate", [8000, 44100, 48000, 192000])
def test_designed_response_hits_the_band_gains(sample_rate):
    fc = eq.band_centres(sample_rate)
    for curve in [*eq.DEFAULT_PRESETS.values(), *SMOOTH]:
        sos, _ = eq.curve_sos(curve, sample_rate=sample_rate)
        measured = _db(sosfreqz(sos, worN=fc, fs=sample_rate)[1])
        assert np.abs(measured - _expected_db(curve, sample_rate)).max() < 0.01


def test_single_filters_follow_the_cookbook():
    """Uncorrected, one band at a time: full gain at DC / centre / Nyquist, half gain at the band edge."""
    sr, bw = 48000, 2 / np.log(2) * np.arcsinh(1 / (2 * eq.BAND_Q))  # peaking bandwidth in octaves
    cases = [(0, [0.0, 31.25 * 2 ** 0.5, sr / 2], [12, 6, 0]),
             (5, [1000.0 * 2 ** (-bw / 2), 1000.0, 1000.0 * 2 ** (bw / 2)], [6, 12, 6]),
             (9, [0.0, 16000 / 2 ** 0.5, sr / 2], [0, 6, 12])]
    for band, freqs, expected in cases:
        gains = np.zeros(10)
        gains[band] = 12.0
        sos = eq.design_sos(gains, sample_rate=sr, correct=False)
        assert np.allclose(_db(sosfreqz(sos, worN=np.array(freqs), fs=sr)[1]), expected, atol=0.05)


def test_correction_is_needed_for_overlapping_bands():
    fc = eq.band_centres(48000)
    raw = eq.design_sos([6.0] * 10, sample_rate=48000, correct=False)
    assert np.abs(_db(sosfreqz(raw, worN=fc, fs=48000)[1]) - 6.0).max() > 1.0  # neighbours add up


@pytest.mark.parametrize("sample_rate, curve", [(8000, eq.DEFAULT_PRESETS["street_traffic"]),
                                                (48000, eq.DEFAULT_PRESETS["cafe"]), (48000, SMOOTH[0])])
def test_sines_through_the_processor_get_the_band_gains(sample_rate, curve):
    fc = eq.band_centres(sample_rate)
    t = np.arange(sample_rate) / sample_rate
    x = 0.25 * np.sin(2 * np.pi * fc[:, None] * t)  # one band centre per channel
    equalizer = eq.Equalizer(sample_rate, len(fc), initial=curve)
    y = np.concatenate([equalizer.process(b) for b in np.array_split(x, 7, axis=1)], axis=1)
    tail = slice(sample_rate // 2, None)  # settled
    gains = []
    for k, f in enumerate(fc):
        basis = np.stack([np.sin(2 * np.pi * f * t[tail]), np.cos(2 * np.pi * f * t[tail])], axis=1)
        coef = np.linalg.lstsq(basis, y[k, tail], rcond=None)[0]
        gains.append(_db(np.hypot(*coef) / 0.25))
    assert np.abs(np.array(gains) - _expected_db(curve, sample_rate)).max() < 0.02


@pytest.mark.parametrize("sample_rate", [8000, 44100, 192000])
def test_auto_gain_keeps_every_sine_within_full_scale(sample_rate):
    freqs = np.r_[0.0, np.geomspace(0.5, sample_rate / 2, 50000)]
    for curve in [*eq.DEFAULT_PRESETS.values(), *SMOOTH, eq.Curve([15.0] * 10, 15.0)]:
        sos, auto_db = eq.curve_sos(curve, sample_rate=sample_rate)
        assert auto_db <= 0.0
        assert _db(sosfreqz(sos, worN=freqs, fs=sample_rate)[1]).max() <= 0.001


def test_no_sample_beyond_full_scale_on_full_scale_input():
    sr = 44100
    t = np.arange(2 * sr) / sr
    inputs = {"sweep": chirp(t, 20, t[-1], 20000, method="logarithmic"),
              "noise": RNG.uniform(-1, 1, t.size), "square": square(2 * np.pi * 1000 * t)}
    x = np.stack(list(inputs.values())).astype(np.float32)
    for label in eq.DEFAULT_PRESETS:
        y = eq.Equalizer(sr, len(inputs), initial=label).process(x)
        assert np.abs(y).max() <= 1.0, label


def test_flat_curve_is_bit_transparent():
    x = RNG.uniform(-1, 1, (2, 5000)).astype(np.float32)
    assert np.array_equal(eq.Equalizer(48000, 2, initial="quiet_room").process(x), x)


FADE_SR, FADE_N = 48000, 24000  # a 0.5-s fade
SINE = 0.9 * np.sin(2 * np.pi * 50 * np.arange(2 * FADE_SR) / FADE_SR)[None]
AT = FADE_SR + FADE_SR // 200  # a quarter period after a zero crossing: the worst moment for a hard switch


def _fade_run(crossfade_seconds):
    """The 50-Hz sine, metro -> cafe at a sine peak: the output (before, during, after) the fade."""
    equalizer = eq.Equalizer(FADE_SR, 1, crossfade_seconds=crossfade_seconds, initial="metro")
    before = equalizer.process(SINE[:, :AT])
    equalizer.set_scene("cafe")  # 50 Hz: about -0.5 dB -> -4 dB after auto-gain
    return before, equalizer.process(SINE[:, AT:AT + FADE_N]), equalizer.process(SINE[:, AT + FADE_N:])


def _worst_step_ratio(before, during, after):
    settled = max(np.abs(np.diff(y[0, -FADE_SR // 4:])).max() for y in (before, after))
    return np.abs(np.diff(np.concatenate([before[:, -1:], during, after[:, :1]], axis=1))).max() / settled


def test_crossfade_has_no_discontinuity_and_ends_on_the_new_curve():
    """Bound: no sample-to-sample step during the fade beyond 1.01 x the largest step of the settled
    output before or after it (measured 0.996; a hard switch at the same moment: 53x)."""
    before, during, after = _fade_run(FADE_N / FADE_SR)
    assert _worst_step_ratio(before, during, after) <= 1.01
    assert _worst_step_ratio(*_fade_run(0.0)) > 10
    # the fade is an equal-gain mix of two settled chains (the new one warmed up on past input) ...
    old, new = (eq.Equalizer(FADE_SR, 1, initial=s).process(SINE)[:, AT:] for s in ("metro", "cafe"))
    w = np.arange(1, FADE_N + 1) / (FADE_N + 1)
    assert np.abs(during - ((1 - w) * old[:, :FADE_N] + w * new[:, :FADE_N])).max() < 1e-5  # 6e-8; cold: 1e-4
    # ... and ends on the new curve alone
    assert np.abs(after - new[:, FADE_N:]).max() < 1e-5


def test_changes_that_cancel_before_the_next_block_do_nothing():
    x = RNG.uniform(-0.5, 0.5, (1, 4000))
    equalizer, reference = (eq.Equalizer(44100, 1, initial="cafe") for _ in range(2))
    assert np.array_equal(equalizer.process(x[:, :1000]), reference.process(x[:, :1000]))
    equalizer.set_scene("metro")
    equalizer.set_scene("cafe")
    equalizer.set_scene("cafe")
    assert np.array_equal(equalizer.process(x[:, 1000:]), reference.process(x[:, 1000:]))


def _run(equalizer, x, changes, sizes):
    """Process x in blocks of the given sizes, each (sample, label) change applied at its sample."""
    n = x.shape[1]
    edges = np.cumsum(sizes)
    cuts = sorted({0, n, *edges[edges < n].tolist(), *(at for at, _ in changes)})
    out = []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        for at, label in changes:
            if at == start:
                equalizer.set_scene(label)
        out.append(equalizer.process(x[:, start:stop]))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("channels, sample_rate", [(1, 44100), (2, 48000), (2, 8000), (3, 192000)])
def test_block_processing_equals_whole_processing(channels, sample_rate):
    n = int(1.5 * sample_rate)
    x = (0.5 * RNG.standard_normal((channels, n))).clip(-1, 1).astype(np.float32)
    # a fade, a change during the next fade (it waits), then a quick return to the start
    changes = [(n // 5, "street_traffic"), (n // 3, "cafe"), (n // 3 + 7, "metro"), (4 * n // 5, "park")]
    make = lambda: eq.Equalizer(sample_rate, channels, crossfade_seconds=0.3, initial="park")  # noqa: E731
    whole = _run(make(), x, changes, [n])
    for _ in range(2):
        sizes = np.where(RNG.random(n) < 0.2, RNG.integers(1, 4, n), RNG.integers(1, sample_rate // 20, n))
        assert np.abs(_run(make(), x, changes, sizes) - whole).max() <= 1e-6


def test_bands_at_or_above_nyquist_are_skipped():
    assert eq.band_centres(8000).tolist() == [31.25, 62.5, 125, 250, 500, 1000, 2000]
    assert eq.design_sos([0] * 10, sample_rate=8000).shape == (7, 6)
    assert eq.design_sos([0] * 10, sample_rate=32000).shape == (9, 6)
    assert eq.design_sos([0] * 10, sample_rate=44100).shape == (10, 6)
    high = eq.design_sos([0] * 7 + [15, 15, 15], sample_rate=8000)
    assert np.array_equal(high, eq.design_sos([0] * 10, sample_rate=8000))


@pytest.mark.parametrize("suffix, text, key", [
    (".toml", '[cafe]\n"3000" = 2\n', "3000"),
    (".toml", '[cafe]\n"1k" = 20\n', "1k"),
    (".toml", "[cafe]\ngain = 3\n", "gain"),
    (".toml", '[cafe]\n"2k" = nan\n', "2k"),
    (".toml", "[cafe]\npreamp_db = -40\n", "preamp_db"),
    (".toml", '[cafe]\n"4k" = "loud"\n', "4k"),
    (".toml", "cafe = 3\n", "cafe"),
    (".toml", '[cafe\n"1k" = 2\n', "TOML"),
    (".json", '{"cafe": {"1k": 2,}}', "JSON"),
    (".json", '{"cafe": {"2k": NaN}}', "2k"),
    (".json", '{"cafe": {"16000": 16}}', "16000"),
    (".json", "[1, 2]", "top level"),
    (".json", '{"cafe": {"1k": 2, "1000": 3}}', "1000"),
    (".yaml", "cafe: {}", ".toml or .json"),
])
def test_preset_errors_are_one_line_naming_file_and_key(tmp_path, suffix, text, key):
    path = tmp_path / f"my presets{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        eq.load_presets(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and key in message


def test_missing_presets_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        eq.load_presets(tmp_path / "nope.toml")


def test_user_presets_override_some_scenes_and_inherit_the_rest(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[cafe]\npreamp_db = -2\n"2k" = 6\n"31.5" = 1.5\n\n[library]\n"1 kHz" = -3\n')
    presets = eq.load_presets(path)
    assert presets["cafe"] == eq.Curve({"2k": 6, "31.25": 1.5}, -2.0)
    assert presets["library"].gains_db[5] == -3.0
    assert presets["street_traffic"] == eq.DEFAULT_PRESETS["street_traffic"]
    for name in ("defaults.toml", "defaults.json"):
        assert dict(eq.load_presets(eq.save_presets(eq.DEFAULT_PRESETS, tmp_path / name))) == dict(
            eq.DEFAULT_PRESETS)
    assert json.loads(eq.presets_text(eq.DEFAULT_PRESETS, fmt="json"))["metro"]["62.5"] == 6.0


def test_default_presets_cover_the_scenes():
    tau = {"airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
           "street_pedestrian", "street_traffic", "tram"}
    demo = {"street_traffic", "park", "cafe", "metro", "rain", "quiet_room", "seaside", "office"}
    assert tau | demo | {"default"} <= set(eq.DEFAULT_PRESETS)
    assert eq.DEFAULT_PRESETS["default"] == eq.Curve()
    table = eq.format_presets(eq.DEFAULT_PRESETS).splitlines()
    assert len(table) == len(eq.DEFAULT_PRESETS) + 1 and "16k" in table[0]


def test_blending_and_lookup():
    presets = eq.DEFAULT_PRESETS
    blend = eq.curve_for_probabilities(presets, {"street_traffic": 0.3, "cafe": 0.3, "unheard_of": 0.0})
    expected = (np.array(presets["street_traffic"].gains_db) + presets["cafe"].gains_db) / 2
    assert np.allclose(blend.gains_db, expected)
    assert eq.curve_for_probabilities(presets, {"bus": 1.0}) == presets["bus"]
    assert eq.curve_for_scene(presets, "volcano") == presets["default"]
    with pytest.raises(ValueError):
        eq.curve_for_probabilities(presets, {"bus": 0.0})


def _music(seconds, sample_rate, channels):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    notes = sum(np.sin(2 * np.pi * f * t + p) for f, p in [(55, 0), (220, 1), (277.2, 2), (330, 3), (880, 4)])
    beat = (RNG.standard_normal(t.size) * np.exp(-30 * (t % 0.5)))
    left = 0.12 * notes + 0.3 * beat
    return np.stack([np.roll(left, 100 * c) for c in range(channels)], axis=1).clip(-1, 1)


@pytest.mark.parametrize("sample_rate, channels, subtype", [(44100, 2, "PCM_16"), (48000, 1, "FLOAT")])
def test_equalize_file_keeps_the_format(tmp_path, sample_rate, channels, subtype):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, _music(3.0, sample_rate, channels), sample_rate, subtype=subtype)
    schedule = [(0.0, "street_traffic"), (1.5, "cafe")]
    eq.equalize_file(src, dst, schedule=schedule, presets=eq.DEFAULT_PRESETS, crossfade_seconds=0.5,
                     block_seconds=0.37)
    info_in, info_out = sf.info(src), sf.info(dst)
    assert (info_out.frames, info_out.samplerate, info_out.channels, info_out.subtype) == (
        info_in.frames, info_in.samplerate, info_in.channels, info_in.subtype)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]  # no temporary left
    x = sf.read(src, dtype="float32", always_2d=True)[0].T
    equalizer = eq.Equalizer(sample_rate, channels, crossfade_seconds=0.5, initial="street_traffic")
    expected = _run(equalizer, x, [(int(1.5 * sample_rate), "cafe")], [x.shape[1]])
    lsb = 2 / 32768 if subtype == "PCM_16" else 1e-7  # written x 32767, read / 32768
    assert np.abs(sf.read(dst, dtype="float32", always_2d=True)[0].T - expected).max() <= lsb


def test_equalize_file_bad_input(tmp_path):
    with pytest.raises(AudioError, match="missing.wav"):
        eq.equalize_file(tmp_path / "missing.wav", tmp_path / "o.wav", schedule=[])
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio at all")
    with pytest.raises(AudioError) as info:
        eq.equalize_file(junk, tmp_path / "o.wav", schedule=[])
    assert "junk.wav" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "o.wav").exists()


def test_music_that_is_cut_silent_short_or_the_output_itself(tmp_path):
    """A truncated WAV is refused; digital silence and a 0.05-s file are equalized with a warning; -o naming the
    music itself is refused and leaves the music as it was (issue 23)."""
    from soundscene.errors import SoundsceneError, SoundsceneWarning

    rate = 44100
    music = tmp_path / "music.wav"
    sf.write(str(music), (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate * 5) / rate)).astype(np.float32), rate)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(music.read_bytes()[:300000])
    with pytest.raises(AudioError, match=r"cut\.wav: truncated"):
        eq.equalize_file(cut, tmp_path / "o.wav", schedule=[])
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(str(silent), np.zeros(rate * 2, np.float32), rate)
    sf.write(str(short), np.full(rate // 20, 0.1, np.float32), rate)
    with pytest.warns(SoundsceneWarning, match="digital silence"):
        eq.equalize_file(silent, tmp_path / "o1.wav", schedule=[])
    with pytest.warns(SoundsceneWarning, match="lasts only 0.05 s"):
        eq.equalize_file(short, tmp_path / "o2.wav", schedule=[])
    before = music.read_bytes()
    with pytest.raises(SoundsceneError, match="is the music itself"):
        eq.equalize_file(music, tmp_path / "." / "music.wav", schedule=[])
    assert music.read_bytes() == before


def test_a_presets_file_nested_too_deeply_is_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        eq.load_presets(deep)


def test_plot_curves_writes_a_png_without_touching_pyplot(tmp_path):
    had_pyplot = "matplotlib.pyplot" in sys.modules
    curves = {s: eq.DEFAULT_PRESETS[s] for s in ("street_traffic", "cafe", "quiet_room")}
    path = eq.plot_curves(curves, tmp_path / "curves.png", sample_rate=44100)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    assert had_pyplot or "matplotlib.pyplot" not in sys.modules


# -- the commands (soundscene eq / eq-live) ---------------------------------------------------------------


def _music_file(path, seconds=4.0, rate=44100, channels=2, subtype="PCM_16"):
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
    sf.write(str(path), np.stack([x * (1 - 0.3 * c) for c in range(channels)], 1), rate, subtype=subtype)
    return path


def test_eq_command_follows_the_ambient_timeline_and_keeps_the_format(tiny_run, tiny_dataset, tmp_path, capsys):
    import soundfile as sf

    from soundscene.cli import main

    parts = [sorted((tiny_dataset.parent / c).glob("*.wav"))[0] for c in ("rain", "rain", "metro", "metro")]
    ambient = tmp_path / "ambient.wav"
    sf.write(str(ambient), np.concatenate([sf.read(str(p))[0] for p in parts]), 8000)
    music = _music_file(tmp_path / "music.wav")
    out = tmp_path / "out.wav"
    assert main(["eq", str(tiny_run.model_path), str(music), "--ambient", str(ambient), "-o", str(out),
                 "--plot", str(tmp_path / "curves.png")]) == 0
    printed = capsys.readouterr().out
    assert "from 0.0 s" in printed and str(out) in printed
    a, b = sf.info(str(music)), sf.info(str(out))
    assert (a.frames, a.samplerate, a.channels, a.subtype) == (b.frames, b.samplerate, b.channels, b.subtype)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["eq", str(music), "--scene", "street_traffic", "-o", str(tmp_path / "forced.flac")]) == 0
    assert sf.info(str(tmp_path / "forced.flac")).frames == a.frames
    assert main(["eq", str(music), "--scene", "moon", "-o", str(tmp_path / "x.wav")]) == 2
    assert "has no preset" in capsys.readouterr().err
    assert main(["eq", "--list-presets"]) == 0
    assert "street_traffic" in capsys.readouterr().out


def test_eq_live_changes_preset_only_on_scene_changes(tiny_run, tmp_path):
    import subprocess
    import sys

    import soundfile as sf

    from soundscene.training.synth import synthesize_scene

    ambient = np.concatenate([synthesize_scene(s, sample_rate=16000, seconds=3.0, seed=1) for s in ("rain", "metro")])
    music = _music_file(tmp_path / "music.wav", seconds=10.0, channels=1, rate=22050, subtype="FLOAT")
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "eq-live", str(tiny_run.model_path), str(music),
                             "-o", str(tmp_path / "live.wav"), "--ambient-stdin", "--rate", "16000",
                             "--sample-format", "f32le"], input=ambient.astype("<f4").tobytes(),
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    changes = [line for line in result.stdout.decode().splitlines() if "EQ preset" in line]
    assert 1 <= len(changes) <= 3  # the first scene, then at most a couple of real changes
    written = sf.info(str(tmp_path / "live.wav"))
    assert written.frames == pytest.approx(6.0 * 22050, abs=22050 * 0.15)  # as long as the ambient input
    assert written.subtype == "FLOAT" and written.channels == 1


def test_eq_live_can_hand_blocks_to_a_player_instead_of_a_file(tiny_run, tmp_path):
    from soundscene.apps.eq import equalize_live
    from soundscene.core.inference import SceneClassifier
    from soundscene.training.synth import synthesize_scene

    stream = SceneClassifier.from_file(tiny_run.model_path).stream(input_rate=8000)
    ambient = synthesize_scene("park", sample_rate=8000, seconds=3.0, seed=1)
    played = []
    out = equalize_live(_music_file(tmp_path / "m.wav", seconds=5.0), None,
                        ambient_blocks=(ambient[None, k:k + 800] for k in range(0, ambient.size, 800)),
                        stream=stream, ambient_rate=8000, play=lambda block, rate: played.append((block.shape, rate)))
    assert out is None and sum(shape[0] for shape, _ in played) == 3 * 44100
    assert {shape[1] for shape, _ in played} == {2} and {rate for _, rate in played} == {44100}


def test_equalize_file_reads_and_writes_names_that_are_not_utf8(tmp_path):
    import os

    music = os.fsdecode(os.fsencode(tmp_path) + b"/m\xe9.wav")
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9.flac")
    sf.write(os.fsencode(music), np.full((44100, 2), 0.01, np.float32), 44100, subtype="PCM_16")
    assert str(eq.equalize_file(music, out, schedule=[(0.0, "park")])) == out
    assert sf.info(os.fsencode(out)).frames == 44100


# -- issue 17: level following, loudness compensation, exposure, per-scene preferences ---------------------
#
# Reference values:
# * ISO 226:2023 Formula (1) with Table 1: 60 phon at 100 Hz = 78.5 dB SPL (the standard's Annex B), 40 phon
#   at 100 Hz = 64.2 dB, 80 phon at 100 Hz = 92.5 dB; every contour passes through its phon value at 1 kHz.
#   Compensation for 40 phon against 80: (64.24 - 40) - (92.46 - 80) = 11.78 dB at 100 Hz; for 60: 6.04 dB.
# * ITU-T H.870: 100 % = 80 dB(A) for 40 h (adult, 1.6 Pa^2h) or 75 dB(A) for 40 h (sensitive); +3 dB halves
#   the time.  90 dB(A) for 10 s: 100 x (10/3600 h / 40 h) x 10^((90 - 80)/10) = 0.0694 %.

import datetime as _dt  # noqa: E402

SR = 44100
DAY = _dt.date(2026, 3, 2)


def _tone(freq, seconds, amplitude, channels=1):
    t = np.arange(int(seconds * SR)) / SR
    return np.tile(amplitude * np.sin(2 * np.pi * freq * t), (channels, 1))


def _amplitude_db(y, freq):
    """The level (dB re 1) of the ``freq`` sine in y (n,), by least squares."""
    t = np.arange(y.size) / SR
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    return 20 * np.log10(np.hypot(*np.linalg.lstsq(basis, y, rcond=None)[0]))


def _feed(equalizer, x, ambient_at=None, *, every=0.5, block=2205):
    """Process x (channels, n) in blocks of ``block``, handing the ambient level ``ambient_at(t)`` (a levels dict or
    None) to the equalizer every ``every`` s; the output aligned with the input (latency removed)."""
    out, step = [], int(every * SR)
    for pos in range(0, x.shape[1], block):
        if ambient_at is not None and pos % step < block:
            equalizer.set_ambient({"levels": ambient_at(pos / SR)})
        out.append(equalizer.process(x[:, pos:pos + block]))
    y = np.concatenate([*out, equalizer.flush()], axis=1)
    return y[:, equalizer.latency:]


def _calibrated(laeq):
    return {"LAeq": laeq, "calibrated": True, "reference": "dB SPL"}


def test_iso226_2023_contours_match_the_standard():
    freqs, spl = eq.contour_spl(60.0)
    at = dict(zip(freqs, spl))
    assert at[100.0] == pytest.approx(78.5, abs=0.05)  # Annex B
    assert dict(zip(*eq.contour_spl(40.0)))[100.0] == pytest.approx(64.2, abs=0.05)
    for phon in (20, 40, 60, 80, 90):
        assert dict(zip(*eq.contour_spl(phon)))[1000.0] == pytest.approx(phon, abs=1e-9)
        assert eq.loudness_level(dict(zip(*eq.contour_spl(phon)))[63.0], 63.0) == pytest.approx(phon, abs=1e-9)
    assert eq.compensation_db(40, [100.0, 1000.0]) == pytest.approx([11.78, 0.0], abs=0.01)
    assert eq.compensation_db(60, [100.0, 1000.0]) == pytest.approx([6.04, 0.0], abs=0.01)
    assert np.all(eq.compensation_db(85, [31.5, 100.0]) == 0)  # nothing above the reference


@pytest.mark.parametrize("phon, expected_100hz", [(40, 11.78), (60, 6.04)])
def test_loudness_compensation_equals_the_contour_differences(phon, expected_100hz):
    """Uncalibrated, volume -40 dB means listening at 80 - 40 = 40 phon. Sines at 100 Hz and 1 kHz through the
    equalizer with and without compensation: the difference is the ISO 226:2023 contour difference (0.5 dB),
    and 1 kHz keeps its level (the compensation's bass boost is made up, not taken off the mids)."""
    x = np.concatenate([_tone(100.0, 3.0, 0.01), _tone(1000.0, 3.0, 0.01)])
    on, off = (eq.Equalizer(SR, 2, crossfade_seconds=0.1, volume_db=phon - 80.0, loudness=lo) for lo in (True, False))
    y_on, y_off = _feed(on, x), _feed(off, x)
    tail = slice(2 * SR, None)
    gain = [_amplitude_db(y_on[k, tail], f) - _amplitude_db(y_off[k, tail], f) for k, f in enumerate((100.0, 1000.0))]
    assert gain[0] - gain[1] == pytest.approx(expected_100hz, abs=0.5)
    assert gain[1] == pytest.approx(0.0, abs=0.5)


def test_preset_adjustments_and_loudness_are_one_curve_and_one_cascade():
    prefs = eq.Preferences({"metro": (0.0, eq.Curve({"1k": 3.0}))})
    equalizer = eq.Equalizer(SR, 2, initial="metro", loudness=True, volume_db=-30.0, preferences=prefs,
                             crossfade_seconds=0.0)
    _feed(equalizer, _tone(1000.0, 0.5, 0.01, channels=2))
    assert equalizer.sos.shape == (10, 6)  # ten biquads, as for a preset alone
    expected = eq.combine(eq.DEFAULT_PRESETS["metro"], eq.Curve({"1k": 3.0}), eq.band_targets(50.0, sample_rate=SR))
    assert equalizer.curve == expected
    measured = _db(sosfreqz(equalizer.sos, worN=np.array(eq.BAND_CENTRES), fs=SR)[1])
    assert np.allclose(measured - measured[5], np.array(expected.gains_db) - expected.gains_db[5], atol=0.01)


def _follow_case(ambient_at, seconds, **settings):
    """A 1-kHz sine at 65 dB(A) at the ear (headphones: a full-scale sine gives 100 dB), calibrated ambient."""
    follow = eq.FollowSettings(**{"max_boost_db": 20.0, **settings})
    equalizer = eq.Equalizer(SR, 1, follow=follow, headphone_db_spl_at_fs=100.0, trace=True)
    x = _tone(1000.0, seconds, 10 ** (-35 / 20))
    return equalizer, x, _feed(equalizer, x, ambient_at)


def test_gain_follows_an_ambient_step_within_the_limits():
    """Ambient 50 -> 70 dB(A) at 20 s: music at 65 + margin 10 means a boost of 15 dB; within 1 dB of it one attack
    time (8 s) after the step, and never beyond max boost or max level."""
    equalizer, x, y = _follow_case(lambda t: _calibrated(50.0 if t < 20 else 70.0), 30.0)
    trace = equalizer.trace()
    t, gain = np.array(trace.time), np.array(trace.gain_db)
    assert np.abs(gain[t < 20]).max() < 0.01  # quiet: the music is loud enough already
    assert np.all(np.abs(gain[t >= 28.0] - 15.0) < 1.0)
    assert gain.max() <= 15.0 + 1e-6
    assert _amplitude_db(y[0, 28 * SR:], 1000.0) - _amplitude_db(x[0, 28 * SR:], 1000.0) == pytest.approx(15, abs=1)
    for limits, cap in [({"max_boost_db": 6.0}, 6.0), ({"max_level_db": 75.0}, 10.0)]:
        equalizer, _, y = _follow_case(lambda t: _calibrated(50.0 if t < 5 else 90.0), 15.0, **limits)
        assert max(equalizer.trace().gain_db) <= cap + 1e-6
        assert max(equalizer.trace().gain_db) >= cap - 1.0


def test_a_short_loud_burst_does_not_pump_the_music():
    """Ambient 70 dB(A) (boost 15 dB), a bus passing for 2 s at 90 dB(A): the gain moves by less than 1 dB."""
    equalizer, _, _ = _follow_case(lambda t: _calibrated(90.0 if 20 <= t < 22 else 70.0), 35.0)
    t, gain = np.array(equalizer.trace().time), np.array(equalizer.trace().gain_db)
    settled = gain[(t > 15) & (t < 20)].mean()
    assert np.abs(gain[t >= 15] - settled).max() < 1.0


def test_uncalibrated_levels_follow_relative_changes_and_say_so():
    equalizer = eq.Equalizer(SR, 1, follow=eq.FollowSettings(), trace=True)
    x = _tone(1000.0, 20.0, 0.01)
    _feed(equalizer, x, lambda t: {"LAeq": -45.0 if t < 5 else -37.0, "calibrated": False})
    assert any("relative changes" in m for m in equalizer.pop_messages())
    assert equalizer.trace().gain_db[-1] == pytest.approx(8.0, abs=1.0)  # as much as the surroundings rose


def test_records_without_levels_turn_following_off_with_one_message():
    equalizer = eq.Equalizer(SR, 1, follow=eq.FollowSettings())
    y = _feed(equalizer, _tone(1000.0, 3.0, 0.1), lambda t: None)
    assert [m for m in equalizer.pop_messages() if "no levels" in m] == [
        "warning: the ambient records carry no levels: level following is off"]
    assert _amplitude_db(y[0, SR:], 1000.0) == pytest.approx(-20.0, abs=0.01)


def test_full_scale_input_never_clips():
    """Full-scale input (a sine at 100 Hz, a square, noise) on a weak headphone amplifier (a full-scale sine gives
    70 dB: loudness compensation lifts the bass) with a 20-dB follower boost: no sample beyond full scale, and the
    sine comes out clean (no clipping distortion: what is not a 100-Hz sine is under 0.1 % of it)."""
    t = np.arange(3 * SR) / SR
    for name, x in [("sine", np.sin(2 * np.pi * 100 * t)), ("square", square(2 * np.pi * 1000 * t)),
                    ("noise", RNG.uniform(-1, 1, t.size))]:
        equalizer = eq.Equalizer(SR, 1, follow=eq.FollowSettings(max_boost_db=20.0, attack_seconds=1.0),
                                 loudness=True, headphone_db_spl_at_fs=70.0, initial="metro")
        y = _feed(equalizer, x[None], lambda t: {"LAeq": -60.0 if t < 0.5 else -30.0, "calibrated": False})[0]
        assert np.abs(y).max() <= 1.0, name
        if name == "sine":
            tail, tt = y[2 * SR:], t[2 * SR:]
            basis = np.stack([np.sin(2 * np.pi * 100 * tt), np.cos(2 * np.pi * 100 * tt)], axis=1)
            residual = tail - basis @ np.linalg.lstsq(basis, tail, rcond=None)[0]
            assert np.abs(tail).max() > 0.9  # held just below full scale, not turned far down
            assert np.sqrt(np.mean(residual ** 2) / np.mean(tail ** 2)) < 1e-3


# -- the peak limiter (issue 23: the music dropped by 13-40 dB for 1-2 s after every peak) ----------------------

LOOK, HOLD = round(limiter.LOOKAHEAD_SECONDS * SR), round(limiter.HOLD_SECONDS * SR)
BETA = np.exp(-1 / (limiter.RELEASE_SECONDS * SR))


def _kick_music(seconds, channels=2):
    """Music-like reference: a bass line (55 / 73.4 Hz with two harmonics, about 0.15), a kick every 0.5 s (a
    150 -> 50 Hz thump, 0.9, 60-ms decay; 12.3 ms off the frame grid) and a little noise (0.01)."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(np.where(t % 2 < 1, 55.0, 73.42)) / SR
    bass = 0.1 * (np.sin(phase) + np.sin(2 * phase) / 2 + np.sin(3 * phase) / 3)
    beat = (t - 0.0123) % 0.5
    kick = 0.9 * np.sin(2 * np.pi * (50 * beat + 2.5 * (1 - np.exp(-40 * beat)))) * np.exp(-beat / 0.06)
    return bass + kick + 0.01 * rng.standard_normal((channels, t.size))


def _gain_db(x, volume_db, **options):
    """The gain the peak limiter applied to each sample of x at ``volume_db`` (dB, <= 0; nan where the music is
    too quiet to tell), the output, and the overshoot each sample would have had without the limiter (dB >= 0).
    The reference is the same equalizer at -30 dB, where nothing comes near full scale."""
    y = _feed(eq.Equalizer(SR, x.shape[0], volume_db=volume_db, **options), x).astype(np.float64)
    ref = _feed(eq.Equalizer(SR, x.shape[0], volume_db=-30.0, **options), x) * 10 ** ((volume_db + 30) / 20)
    top, k = np.abs(ref).max(axis=0), np.abs(ref).argmax(axis=0)
    gain = np.full(top.size, np.nan)
    loud = top > 10 ** (volume_db / 20) * 1e-3
    gain[loud] = _db(y[k[loud], np.flatnonzero(loud)] / ref[k[loud], np.flatnonzero(loud)])
    return gain, y, np.maximum(_db(np.maximum(top, 1e-12)), 0.0)


def _allowed_db(overshoot_db):
    """The most a look-ahead limiter may take off at each sample: the overshoot of the loudest sample from
    hold + look-ahead before it to look-ahead after it, and after that that overshoot decaying at the release
    rate: ``max_m overshoot[m] * beta ** max(0, n - m - hold - lookahead)`` over ``m <= n + lookahead``."""
    padded = np.concatenate([np.zeros(HOLD + LOOK), overshoot_db, np.zeros(LOOK)])
    near = np.lib.stride_tricks.sliding_window_view(padded, HOLD + 2 * LOOK + 1).max(axis=1)
    allowed, last = np.empty_like(near), 0.0
    for n, value in enumerate(near):
        last = allowed[n] = max(value, last * BETA)
    return allowed


def test_limiter_turns_a_click_down_by_what_it_needs_in_advance():
    """A 1-kHz tone at 0.5 with one sample at 2.0 (6.02 dB over): the gain is 1 until one look-ahead before it,
    falls linearly to exactly 0.5 at it, holds, then the 6.02 dB decay with the release time constant (about
    2.1 dB one time constant after the hold). Cut into any chunks, the same output."""
    n, at = SR // 2, SR // 4
    x = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / SR)[None]
    x[0, at] = 2.0
    state = limiter.limiter_state(channels=1, sample_rate=SR)
    y, gain, _ = limiter.limit_peaks(x, state=state, sample_rate=SR)
    assert state.lookahead == LOOK == 220
    y, gain = y[0, LOOK:], gain[LOOK:]  # aligned with x
    assert np.abs(y).max() <= 1.0 and y[at] == pytest.approx(1.0, abs=1e-12)
    assert np.all(gain[:at - LOOK] == 1.0)  # nothing before the look-ahead
    ramp = 1 - 0.5 * (np.arange(at - LOOK, at + 1) - (at - LOOK) + 1) / (LOOK + 1)
    assert np.allclose(gain[at - LOOK:at + 1], ramp, atol=1e-12)  # linear attack, complete at the click
    assert np.allclose(gain[at:at + HOLD + 1], 0.5, atol=1e-12)  # held 25 ms
    one = at + HOLD + LOOK + round(limiter.RELEASE_SECONDS * SR)
    assert 2.0 < -_db(gain[one]) < 6.02 * np.exp(-1) + 1e-9  # 6.02 dB e^-1 = 2.21 dB (the attack's average: less)
    last = n - 1 - LOOK  # the last sample out
    assert -_db(gain[last]) == pytest.approx(6.0206 * BETA ** (last - at - HOLD - LOOK / 2), rel=0.01)  # 0.078 dB
    for sizes in ([1] * 300 + [n], [882] * 30, RNG.integers(1, 5000, 200)):
        parts, chunk_state, pos = [], state, 0
        for size in sizes:
            out, _, chunk_state = limiter.limit_peaks(x[:, pos:pos + size], state=chunk_state, sample_rate=SR)
            parts.append(out)
            pos += size
        assert np.allclose(np.concatenate(parts, axis=1)[0, LOOK:n], y[:n - LOOK], atol=1e-12, rtol=0)


@pytest.mark.parametrize("burst, needed_db", [(0.44, 0.0), (0.6, 2.56)])
def test_bursts_that_fit_are_not_turned_down(burst, needed_db):
    """A steady 1-kHz tone at 0.05 with 50-ms bursts (every 0.5 s, off the frame grid) at +7 dB. Bursts at 0.44
    reach 0.98: the gain stays at +7 dB at every sample (before: the same with bursts at 0.6, which need 2.56 dB,
    took the gain down by 28.8 dB for 1.5 s). Bursts at 0.6: never more than they need (+ 0.5 dB), and the tone
    between them (from 150 ms after a burst) within 0.5 dB of +7 dB."""
    t = np.arange(4 * SR) / SR
    x = (np.where((t + 0.015) % 0.5 < 0.05, burst, 0.05) * np.sin(2 * np.pi * 1000 * t))[None]
    gain, y, overshoot = _gain_db(x, 7.0)
    assert overshoot.max() == pytest.approx(needed_db, abs=0.01)
    assert np.abs(y).max() <= 1.0
    assert np.nanmax(-gain) <= needed_db + 0.5
    assert np.nanmax(-gain - _allowed_db(overshoot)) <= 0.5
    between = ((t + 0.015) % 0.5 > 0.2) & ((t + 0.015) % 0.5 < 0.5 - 0.006)
    assert np.nanmax(-gain[between]) < 0.5
    if needed_db == 0:
        assert np.nanmax(np.abs(gain)) < 1e-5  # the limiter never engaged


def test_kicks_at_12_db_are_turned_down_by_their_overshoot_only():
    """Music-like material (a bass line, kicks 12.3 dB over full scale at +12 dB, noise): no sample beyond full
    scale, the kicks' peaks at it (not far below), no reduction at any sample beyond what the loudest sample
    within the limiter's window needs (+ 0.5 dB; released at the release rate after it), and between kicks
    (250..450 ms after each) the bass keeps its +12 dB within 0.5 dB. Before: 42 dB of reduction where 1 dB
    was needed, 12.5 dB on average between the kicks, where nothing was."""
    x = _kick_music(6.0)
    gain, y, overshoot = _gain_db(x, 12.0)
    assert overshoot.max() > 12.0
    assert np.abs(y).max() <= 1.0 and np.abs(y).max() > 0.999
    assert np.nanmax(-gain - _allowed_db(overshoot)) <= 0.5
    assert np.nanmax(-gain) <= overshoot.max() + 0.5
    beat = (np.arange(x.shape[1]) / SR - 0.0123) % 0.5
    assert np.nanmax(-gain[(beat > 0.25) & (beat < 0.45)]) < 0.5


def test_peak_limited_output_is_the_same_in_blocks_of_any_size_and_never_clips():
    """The kick music at +12 dB in blocks of 1 .. 65536 samples (and of random sizes): the same output as in
    one block, never beyond full scale. (Blocks of 1, 2 and 7 samples for the first kick only: time.)"""
    x = _kick_music(2.0).astype(np.float32)

    def run(sizes):
        equalizer = eq.Equalizer(SR, 2, initial="street_traffic", volume_db=12.0)
        out = _run_events(equalizer, x, [], sizes)
        return np.concatenate([out, equalizer.flush()], axis=1)

    whole = run([x.shape[1]])
    assert np.abs(whole).max() <= 1.0 and np.abs(whole).max() > 0.999
    for size in (1, 2, 7, 64, 881, 882, 883, 1103, 4096, 65536):
        chunked = run([size] * (x.shape[1] // size + 1) if size > 7 else [size] * (3000 // size) + [x.shape[1]])
        assert np.abs(chunked).max() <= 1.0, size
        assert np.array_equal(chunked, whole), size
    assert np.array_equal(run(np.exp(RNG.uniform(0, np.log(65536), 500)).astype(int) + 1), whole)


def _run_events(equalizer, x, events, sizes):
    """Process x in blocks of the given sizes, each (sample, action) applied at its sample."""
    n = x.shape[1]
    edges = np.cumsum(sizes)
    cuts = sorted({0, n, *edges[edges < n].tolist(), *(at for at, _ in events)})
    out = []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        for at, action in events:
            if at == start:
                action(equalizer)
        out.append(equalizer.process(x[:, start:stop]))
    return np.concatenate(out, axis=1)


def test_block_processing_equals_whole_processing_with_everything_on():
    n = 6 * SR
    x = (0.5 * RNG.standard_normal((2, n))).clip(-1, 1).astype(np.float32)
    levels = [(int(k * 0.3 * SR), -50.0 + 25.0 * (k * 0.3 > 2) + 3 * np.sin(k)) for k in range(20)]
    events = [(at, lambda e, v=v: e.set_ambient({"levels": {"LAeq": v, "calibrated": True}})) for at, v in levels]
    events += [(n // 4, lambda e: e.set_scene("street_traffic")), (n // 2, lambda e: e.adjust(volume_db=-3.0)),
               (2 * n // 3, lambda e: e.set_scene("cafe"))]

    def make():
        exposure = eq.Exposure(headphone_db_spl_at_fs=110.0, days={str(DAY): 1.55}, today=DAY)
        return eq.Equalizer(SR, 2, crossfade_seconds=0.3, initial="park", loudness=True, exposure=exposure,
                            limiter=True, follow=eq.FollowSettings(attack_seconds=1.0, release_seconds=2.0),
                            preferences=eq.Preferences(), volume_db=-20.0)

    whole_eq = make()
    whole = _run_events(whole_eq, x, events, [n])
    assert any("limiter" in m for m in whole_eq.pop_messages())  # the limiter did engage
    for _ in range(2):
        sizes = np.where(RNG.random(n) < 0.2, RNG.integers(1, 4, n), RNG.integers(1, SR // 20, n))
        assert np.abs(_run_events(make(), x, events, sizes) - whole).max() <= 1e-6


def test_dose_follows_the_h870_arithmetic():
    assert eq.allowance_pa2h("adult") == pytest.approx(1.6)
    assert eq.allowance_pa2h("sensitive") == pytest.approx(0.506, abs=0.001)
    assert eq.dose_percent(80.0, 40.0) == pytest.approx(100.0)
    assert eq.dose_percent(83.0, 20.0) == pytest.approx(100 * 10 ** 0.3 / 2)  # +3 dB: half the time
    assert eq.dose_percent(75.0, 40.0, "sensitive") == pytest.approx(100.0)
    exposure = eq.Exposure(headphone_db_spl_at_fs=100.0, today=DAY)  # a full-scale 1-kHz sine: 100 dB(A)
    _feed(eq.Equalizer(SR, 2, exposure=exposure), _tone(1000.0, 10.0, 10 ** (-10 / 20), channels=2))
    # 10 s of 90 dB(A) (the flush adds 20 ms of silence, no energy)
    assert exposure.session_dose == pytest.approx(eq.dose_percent(90.0, 10 / 3600), rel=0.01)
    assert exposure.session_dose == pytest.approx(0.0694, abs=0.0005)


def test_limiter_keeps_every_second_within_the_allowance_level():
    """95 dB(A) music with 1/30 of the week's allowance left, spread over 2 h: the permitted level is 78.2 dB(A).
    No second of the output (on the 20-ms frame grid, measured on the output with IEC 61672 A-weighting) gets
    above it, and the music is held just under it (1 dB), not far below."""
    from pyoctaveband import WeightingFilter

    allowance = eq.allowance_pa2h("adult")
    exposure = eq.Exposure(headphone_db_spl_at_fs=100.0, limit_hours=2.0, days={str(DAY): allowance * 29 / 30},
                           today=DAY)
    permitted = exposure.allowed_level_db()
    assert permitted == pytest.approx(10 * np.log10(allowance / 30 / (2 * 20e-6 ** 2)), abs=1e-9)
    equalizer = eq.Equalizer(SR, 1, exposure=exposure, limiter=True)
    t = np.arange(10 * SR) / SR
    beat = 10 ** (-5 / 20) * np.sin(2 * np.pi * 1000 * t) * (0.3 + 0.7 * (t % 0.5 < 0.1))  # loud, with beats
    y = _feed(equalizer, beat[None])
    assert [m for m in equalizer.pop_messages() if "exposure limiter" in m][:1]  # it said so (once)
    a = WeightingFilter(SR, "A", stateful=True).filter(y[0].astype(np.float64))
    frame = round(eq.stage.FRAME_SECONDS * SR)  # the exposure bound holds on the gain stage's frame grid
    ms = (a[:a.size // frame * frame].reshape(-1, frame) ** 2).mean(axis=1)[1:]  # the first: the filter settling
    second = np.convolve(ms, np.ones(50) / 50, mode="valid")
    levels = 10 * np.log10(2 * second) + 100.0
    assert levels.max() <= permitted + 0.1
    assert levels[350:].min() >= permitted - 2.0  # held near it once the 3-s music level has settled (7 s)
    assert exposure.allowed_level_db() < permitted  # the dose went on counting


def test_preferences_and_dose_survive_a_restart(tmp_path):
    state = tmp_path / "state" / "eq.json"
    prefs = eq.Preferences.from_state(eq.load_state(state))
    exposure = eq.Exposure(headphone_db_spl_at_fs=100.0, days=eq.exposure.exposure_days(eq.load_state(state), state),
                           today=DAY)
    first = eq.Equalizer(SR, 1, initial="metro", preferences=prefs, exposure=exposure)
    first.adjust(volume_db=-6.0, bands=eq.Curve({"62.5": 3.0}))
    _feed(first, _tone(1000.0, 2.0, 0.1))
    eq.save_state(state, preferences=prefs.to_state(), exposure=exposure.to_state())
    assert sorted(p.name for p in state.parent.iterdir()) == ["eq.json"]  # written atomically, nothing left over
    # a new process
    saved = eq.load_state(state)
    again = eq.Exposure(headphone_db_spl_at_fs=100.0, days=eq.exposure.exposure_days(saved, state), today=DAY)
    assert again.dose == pytest.approx(exposure.dose)
    second = eq.Equalizer(SR, 1, initial="cafe", preferences=eq.Preferences.from_state(saved, state))
    assert second.curve == eq.DEFAULT_PRESETS["cafe"]  # another scene: no preference
    second.set_scene("metro")
    assert second.curve == eq.combine(eq.DEFAULT_PRESETS["metro"], eq.Curve({"62.5": 3.0}))
    x = _tone(1000.0, 2.0, 0.1)
    remembered = _feed(eq.Equalizer(SR, 1, initial="metro", preferences=eq.Preferences.from_state(saved, state)), x)
    reference = _feed(eq.Equalizer(SR, 1, initial=eq.combine(eq.DEFAULT_PRESETS["metro"], eq.Curve({"62.5": 3.0})),
                                   volume_db=-6.0), x)
    assert np.abs(remembered - reference).max() <= 1e-7


@pytest.mark.parametrize("text, what", [("{not json", "cannot read"), ('{"version": 7}', "not a soundscene"),
                                        ('{"version": 1, "preferences": {"metro": {"volume_db": 99}}}', "metro"),
                                        ('{"version": 1, "exposure": {"days": {"2026-01-01": -1}}}', "exposure")])
def test_a_bad_state_file_is_one_line_naming_it(tmp_path, text, what):
    path = tmp_path / "bad state.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        state = eq.load_state(path)
        eq.Preferences.from_state(state, path)
        eq.exposure.exposure_days(state, path)
    assert str(path) in str(info.value) and what in str(info.value) and "\n" not in str(info.value)


def test_eq_command_follows_the_ambient_level_and_keeps_preferences(tiny_run, tiny_dataset, tmp_path, capsys):
    from soundscene.cli import main

    quiet, loud = (sorted((tiny_dataset.parent / c).glob("*.wav"))[0] for c in ("rain", "metro"))
    a, b = sf.read(str(quiet))[0], sf.read(str(loud))[0]
    ambient = tmp_path / "ambient.wav"
    sf.write(str(ambient), np.concatenate([0.05 * a / np.abs(a).max()] * 4 + [0.9 * b / np.abs(b).max()] * 6), 8000)
    music, out, state = _music_file(tmp_path / "music.wav", seconds=15.0), tmp_path / "out.wav", tmp_path / "s.json"
    common = ["--state", str(state), "--headphone-db-spl-at-fs", "95"]
    assert main(["eq", str(tiny_run.model_path), str(music), "--ambient", str(ambient), "-o", str(out),
                 "--calibration-db", "110", "--follow-level", "--loudness", "--limiter", "--record-dose",
                 "--plot", str(tmp_path / "run.png"), *common]) == 0
    printed = capsys.readouterr().out
    assert "ambient LAeq" in printed and "dB SPL" in printed and "exposure:" in printed
    assert sf.info(str(out)).frames == sf.info(str(music)).frames
    assert (tmp_path / "run.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(state.read_text())["exposure"]["days"]  # the dose was recorded
    # a preference for a scene, used the next time, then forgotten
    assert main(["eq", str(music), "--scene", "metro", "--volume-db", "-6", "--adjust", "16k=-1",
                 "-o", str(tmp_path / "a.wav"), *common]) == 0
    assert json.loads(state.read_text())["preferences"]["metro"] == {"volume_db": -6.0, "bands": {"16k": -1.0}}
    assert main(["eq", str(music), "--scene", "metro", "-o", str(tmp_path / "b.wav"), *common]) == 0
    assert main(["eq", str(music), "--scene", "metro", "--reset-preferences", "-o", str(tmp_path / "c.wav"),
                 *common]) == 0
    assert json.loads(state.read_text())["preferences"] == {}
    rms = {k: np.sqrt(np.mean(sf.read(str(tmp_path / f"{k}.wav"))[0][44100:] ** 2)) for k in "abc"}
    assert 20 * np.log10(rms["b"] / rms["c"]) == pytest.approx(-6.0, abs=0.05)  # 16 kHz: not in this music
    assert 20 * np.log10(rms["a"] / rms["b"]) == pytest.approx(0.0, abs=0.01)
    assert main(["eq", str(music), "--scene", "metro", "--adjust", "1k", "-o", str(tmp_path / "d.wav"), *common]) == 2
    assert "--adjust" in capsys.readouterr().err


def test_eq_live_feeds_the_decisions_levels_to_the_follower(tiny_run, tmp_path):
    from soundscene.core.inference import SceneClassifier
    from soundscene.training.synth import synthesize_scene

    stream = SceneClassifier.from_file(tiny_run.model_path).stream(input_rate=8000)
    ambient = np.concatenate([0.02 * synthesize_scene("park", sample_rate=8000, seconds=4.0, seed=1),
                              0.5 * synthesize_scene("metro", sample_rate=8000, seconds=8.0, seed=2)])
    done = []
    out = eq.equalize_live(_music_file(tmp_path / "m.wav", seconds=12.0), tmp_path / "live.wav",
                           ambient_blocks=(ambient[None, k:k + 800] for k in range(0, ambient.size, 800)),
                           stream=stream, ambient_rate=8000, on_done=done.append,
                           follow=eq.FollowSettings(attack_seconds=2.0, release_seconds=4.0), trace=True)
    assert sf.info(str(out)).frames == pytest.approx(12 * 44100, abs=441)
    trace = done[0].trace()
    heard = [v for v in trace.ambient_db if v is not None]
    assert heard and max(heard) - min(heard) > 15  # the decisions carried the ambient LAeq
    assert max(trace.gain_db) > 5  # and the music rose with it
