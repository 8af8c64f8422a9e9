"""Sound levels (soundscene.core.levels): reference values from IEC 61672-1 (frequency and time weighting),
IEC 61260-1 (third-octave bands) and calibration, checked on signals whose levels are known."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from soundscene.cli import main
from soundscene.core import records
from soundscene.core.inference import SceneClassifier
from soundscene.core.levels import LevelMeter, band_centres, calibrate_file
from soundscene.errors import AudioError

# IEC 61672-1 Table 3: nominal frequency -> (A weighting, C weighting) in dB, and the class 1 limits of the
# 2002 edition (tighter than the 2013 acceptance limits): (upper, lower) deviation, None = no lower limit.
WEIGHTING = {
    16: (-56.7, -8.5, 2.0, -4.0), 20: (-50.5, -6.2, 2.0, -2.0), 25: (-44.7, -4.4, 2.0, -1.5),
    31.5: (-39.4, -3.0, 1.5, -1.5), 40: (-34.6, -2.0, 1.0, -1.0), 50: (-30.2, -1.3, 1.0, -1.0),
    63: (-26.2, -0.8, 1.0, -1.0), 80: (-22.5, -0.5, 1.0, -1.0), 100: (-19.1, -0.3, 1.0, -1.0),
    125: (-16.1, -0.2, 1.0, -1.0), 160: (-13.4, -0.1, 1.0, -1.0), 200: (-10.9, 0.0, 1.0, -1.0),
    250: (-8.6, 0.0, 1.0, -1.0), 315: (-6.6, 0.0, 1.0, -1.0), 400: (-4.8, 0.0, 1.0, -1.0),
    500: (-3.2, 0.0, 1.0, -1.0), 630: (-1.9, 0.0, 1.0, -1.0), 800: (-0.8, 0.0, 1.0, -1.0),
    1000: (0.0, 0.0, 0.7, -0.7), 1250: (0.6, 0.0, 1.0, -1.0), 1600: (1.0, -0.1, 1.0, -1.0),
    2000: (1.2, -0.2, 1.0, -1.0), 2500: (1.3, -0.3, 1.0, -1.0), 3150: (1.2, -0.5, 1.0, -1.0),
    4000: (1.0, -0.8, 1.0, -1.0), 5000: (0.5, -1.3, 1.5, -1.5), 6300: (-0.1, -2.0, 1.5, -2.0),
    8000: (-1.1, -3.0, 1.5, -2.5), 10000: (-2.5, -4.4, 2.0, -3.0), 12500: (-4.3, -6.2, 2.0, -5.0),
    16000: (-6.6, -8.5, 2.5, -16.0), 20000: (-9.3, -11.2, 3.0, None),
}


def tone(frequency, *, rate=48000, seconds=3.0, rms=1.0):
    t = np.arange(int(rate * seconds)) / rate
    return rms * math.sqrt(2) * np.sin(2 * np.pi * frequency * t)


def measure(x, rate, **kwargs):
    meter = LevelMeter(rate, **kwargs)
    meter.push(x)
    meter.finish()
    return meter


def steady(x, rate, **kwargs):
    """The levels of a steady signal from its second second on (the weighting filters have settled)."""
    return measure(x, rate, **kwargs).levels_between(1.0, len(x) / rate)


@pytest.mark.parametrize("rate, highest", [(48000, 20000), (22050, 6300)])
def test_a_and_c_weighting_are_within_class_1_at_the_standard_frequencies(rate, highest):
    """48 kHz: every frequency of the table to 20 kHz; 22.05 kHz: up to 6.3 kHz (the bilinear design falls off
    towards Nyquist above that)."""
    for frequency, (a, c, upper, lower) in WEIGHTING.items():
        if frequency > highest:
            continue
        levels = steady(tone(frequency, rate=rate), rate)  # 0 dBFS unweighted
        for name, reference in (("LAeq", a), ("LCeq", c)):
            deviation = getattr(levels, name) - reference
            assert deviation <= upper and (lower is None or deviation >= lower), (rate, frequency, name, deviation)


def test_a_known_tone_reads_its_level_in_dbfs_and_with_a_calibration():
    x = tone(1000, rms=0.1)  # -20 dBFS
    plain = steady(x, 48000)
    assert plain.calibrated is False and plain.LAeq == pytest.approx(-20.0, abs=0.05)
    assert plain.LCeq == pytest.approx(-20.0, abs=0.05) and plain.bands["1000"] == pytest.approx(-20.0, abs=0.1)
    calibrated = steady(x, 48000, calibration_db=114.0)
    assert calibrated.calibrated is True and calibrated.LAeq == pytest.approx(94.0, abs=0.05)
    record = calibrated.to_record()
    assert record["reference"] == "dB SPL" and record["LAeq"] == 94.0 and record["LAFmax"] == 94.0
    assert plain.to_record()["reference"] == "dBFS"


def test_calibrate_finds_the_offset_that_makes_a_calibrator_read_94_db(tmp_path):
    path = tmp_path / "calibrator.wav"
    sf.write(str(path), np.stack([tone(1000, seconds=5, rms=0.05)] * 2, axis=1), 48000, subtype="PCM_24")
    offset = calibrate_file(path, reference_db=94.0)
    assert offset == pytest.approx(94.0 + 26.02, abs=0.05)
    mono, rate = sf.read(str(path))
    assert steady(mono.mean(axis=1), rate, calibration_db=offset).LAeq == pytest.approx(94.0, abs=0.05)
    result = subprocess.run([sys.executable, "-m", "soundscene.cli", "calibrate", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and float(result.stdout) == pytest.approx(offset, abs=0.05)


@pytest.mark.parametrize("signal, reason", [
    (lambda: 0.05 * np.random.default_rng(0).standard_normal(48000 * 4), "strongest frequency"),
    (lambda: tone(250, seconds=4, rms=0.05), "strongest frequency"),
    (lambda: np.concatenate([tone(1000, seconds=2, rms=0.05), tone(1000, seconds=2, rms=0.01)]), "varies"),
    (lambda: tone(1000, seconds=4, rms=0.05) + tone(3000, seconds=4, rms=0.0025), None),  # -26 dB distortion: fine
    (lambda: tone(1000, seconds=4, rms=0.05) + tone(5000, seconds=4, rms=0.03), "energy is in"),
    (lambda: tone(1000, seconds=0.5, rms=0.05), "too short"),
    (lambda: np.zeros(48000 * 2), "silent"),
])
def test_calibrate_refuses_what_is_not_a_steady_calibrator_tone(tmp_path, signal, reason):
    path = tmp_path / "not-a-calibrator.wav"
    sf.write(str(path), signal(), 48000, subtype="FLOAT")
    if reason is None:
        assert calibrate_file(path) > 0
        return
    with pytest.raises(AudioError, match=reason) as caught:
        calibrate_file(path)
    assert "\n" not in str(caught.value)
    if reason == "varies":  # the command says it in one line
        result = subprocess.run([sys.executable, "-m", "soundscene.cli", "calibrate", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def pink_noise(rate, seconds, seed=0):
    """Noise whose power falls 3 dB per octave exactly (random phases, exact magnitudes)."""
    n = int(rate * seconds)
    f = np.fft.rfftfreq(n, 1 / rate)
    phases = np.exp(2j * np.pi * np.random.default_rng(seed).random(f.size))
    spectrum = np.zeros(f.size, complex)
    spectrum[1:] = phases[1:] / np.sqrt(f[1:])
    x = np.fft.irfft(spectrum, n)
    return 0.1 * x / x.std()


def test_pink_noise_gives_equal_third_octave_bands():
    levels = measure(pink_noise(48000, 8), 48000).total()
    values = np.array(list(levels.bands.values()))
    assert list(levels.bands)[0] == "25" and list(levels.bands)[-1] == "20000" and len(values) == 30
    assert np.ptp(values) < 1.0 and np.abs(values - np.median(values)).max() < 0.5


def test_a_tone_lands_in_its_band():
    bands = steady(tone(2000, rms=0.1), 48000).bands
    assert max(bands, key=bands.get) == "2000" and bands["2000"] == pytest.approx(-20.0, abs=0.1)
    assert bands["1600"] < -40 and bands["2500"] < -40


def test_bands_reach_the_highest_band_below_nyquist():
    assert band_centres(8000)[-1] == 3150 and band_centres(96000)[-1] == 20000
    assert band_centres(22050)[-1] == 8000 and band_centres(16000)[-1] == 6300


def test_f_time_weighting_decays_at_34_7_db_per_second():
    x = np.concatenate([tone(1000, seconds=2), np.zeros(48000)])
    meter = measure(x, 48000)
    after = [meter.levels_between(2.0 + k * 0.25, 2.25 + k * 0.25).LAFmin for k in range(4)]
    rates = -np.diff(after) / 0.25
    assert np.allclose(rates, 34.7, atol=0.3), rates  # IEC 61672-1: 34.7 dB/s, the tolerance is -3.7 dB/s


@pytest.mark.parametrize("burst_ms, reference", [(200, -1.0), (10, -11.1), (2, -18.0)])
def test_lafmax_of_a_tone_burst_is_the_standards_response(burst_ms, reference):
    """IEC 61672-1 Table 4: a 4-kHz burst of the steady signal's level reads LAFmax = steady + delta_ref."""
    rate = 48000
    continuous = steady(tone(4000, seconds=3), rate).LAeq
    burst = np.zeros(rate * 3)
    start = int(1.5 * rate)
    burst[start:start + int(burst_ms * rate / 1000)] = tone(4000, seconds=burst_ms / 1000)
    lafmax = measure(burst, rate).total().LAFmax
    assert lafmax - continuous == pytest.approx(reference, abs=0.5)


def test_statistical_levels_are_ordered_on_real_scenes(tmp_path):
    from soundscene.training.synth import synthesize_scene

    for k, scene in enumerate(("street_traffic", "metro", "park", "rain")):
        x = synthesize_scene(scene, sample_rate=32000, seconds=6.0, seed=k)
        for levels in (measure(x, 32000).total(), measure(x, 32000).levels_between(1, 5)):
            assert levels.LAFmin <= levels.LA90 <= levels.LA50 <= levels.LA10 <= levels.LAFmax, (scene, levels)
            assert levels.LAFmin <= levels.LAeq <= levels.LAFmax


def test_levels_do_not_depend_on_the_block_size():
    x = pink_noise(44100, 6, seed=4) * np.linspace(0.1, 2, 44100 * 6)
    whole = measure(x, 44100)
    cuts = np.cumsum(np.random.default_rng(1).integers(1, 9000, 100))
    pieces = LevelMeter(44100)
    for part in np.split(x, cuts[cuts < x.size]):
        pieces.push(part)
    pieces.finish()
    for a, b in [(whole.total(), pieces.total()), (whole.levels_between(2, 4), pieces.levels_between(2, 4))]:
        for name in ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-6), name
        assert np.allclose(list(a.bands.values()), list(b.bands.values()), atol=1e-6)


def test_a_meter_started_inside_a_recording_keeps_the_recordings_grid():
    """A part of a long file (a batch shard) measured from its own origin gives the whole file's window levels
    once its filters have settled (2 s)."""
    rate = 16000
    x = pink_noise(rate, 12, seed=7) * np.repeat(np.random.default_rng(3).uniform(0.1, 1, 12), rate)
    whole = measure(x, rate)
    origin = 3 * rate + 1234  # not on the tick grid
    part = LevelMeter(rate, origin=origin)
    part.push(x[origin:])
    part.finish()
    assert part.ticks[0].start == origin and part.ticks[1].start % part.tick == 0
    for start in (6.0, 8.5):
        a, b = whole.levels_between(start, start + 2), part.levels_between(start, start + 2)
        for name in ("LAeq", "LAFmax", "LAFmin", "LA10", "LA90", "LCeq"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-6), name
        assert np.allclose(list(a.bands.values()), list(b.bands.values()), atol=1e-6)


def reference_levels(x, rate):
    """The levels of a whole signal computed the plain way: PyOctaveBand's filters over every sample (A weighting,
    F time weighting), each 0.25-s tick's spectrum against the band weights; what the meter computes faster."""
    from pyoctaveband import TimeWeighting, WeightingFilter

    from soundscene.core.levels import band_weights

    tick, step, settle = (int(round(seconds * rate)) for seconds in (0.25, 0.01, 0.75))
    a = WeightingFilter(rate, "A", stateful=True).filter(x)
    envelope = TimeWeighting(rate, "fast").process(a)
    _, weights = band_weights(rate, tick)
    frames = [x[k:k + tick] for k in range(0, x.size, tick)]
    energies = sum(weights @ np.abs(np.fft.rfft(f, n=tick)) ** 2 / tick for f in frames) / x.size
    values = envelope[step - 1::step][(np.arange(step - 1, x.size, step) >= settle)]
    shares = np.percentile(values, [90, 50, 10], method="inverted_cdf")
    return {"LAeq": 10 * np.log10(np.mean(a ** 2)), "LCeq": 10 * np.log10(energies[-1]),
            "bands": 10 * np.log10(energies[:-1]), "LAFmax": 10 * np.log10(envelope[settle:].max()),
            "LAFmin": 10 * np.log10(envelope[settle:].min()),
            **dict(zip(("LA10", "LA50", "LA90"), 10 * np.log10(shares)))}


@pytest.mark.parametrize("rate", [48000, 44100, 22050])
def test_the_meter_measures_what_the_plain_filters_measure(rate):
    """Ticks measured together from their spectra (the A weighting by FFT, the F detector on a grid) give the
    plain computation's levels to float rounding, and LAFmax/LAFmin within the grid's bound (1/3 ms of decay at
    34.7 dB/s: 0.012 dB, inside the extremes of every sample)."""
    rng = np.random.default_rng(rate)
    x = pink_noise(rate, 9, seed=rate % 97) * np.repeat(rng.uniform(0.01, 1, 37), rate // 4)[:int(9 * rate)]
    x[int(4.3 * rate):int(4.3 * rate) + rate // 500] += 0.8 * np.sign(rng.standard_normal(rate // 500))  # a click
    reference = reference_levels(x, rate)
    meter = LevelMeter(rate)
    for part in np.array_split(x, 23):
        meter.push(part)
    meter.finish()
    window = meter.levels_between(0, len(x) / rate)  # every tick: exact percentiles
    for name in ("LAeq", "LCeq", "LA10", "LA50", "LA90"):
        assert getattr(window, name) == pytest.approx(reference[name], abs=1e-6), name
    assert np.allclose(list(window.bands.values()), reference["bands"], atol=1e-6)
    assert -0.012 <= window.LAFmax - reference["LAFmax"] <= 1e-9
    assert -1e-9 <= window.LAFmin - reference["LAFmin"] <= 0.012
    total = meter.total()
    assert total.LAeq == pytest.approx(window.LAeq, abs=1e-9) and total.LAFmax == pytest.approx(window.LAFmax, abs=1e-9)


def test_the_a_weighting_from_spectra_is_sosfilts_output_and_state():
    """The A weighting over whole ticks (the periodic-steady-state trick) gives scipy's sosfilt output and its
    state to ~1e-11 of the signal, over many ticks: the error does not build up."""
    from scipy.signal import sosfilt

    from soundscene.core.levels import _design

    rate, tick = 48000, 12000
    a = _design(rate, tick, 480).a
    x = pink_noise(rate, 30, seed=3) * np.repeat(np.random.default_rng(4).uniform(0.001, 1, 30), rate)
    expected, state = sosfilt(a.sos, x, zi=np.zeros((3, 2)))
    frames = x.reshape(-1, tick)
    got = np.empty_like(frames)
    carried = np.zeros(a.order)
    for k in range(0, len(frames), 7):  # batches of 7 ticks
        part = frames[k:k + 7]
        got[k:k + 7], carried = a.weigh(part, np.fft.rfft(part, axis=-1), carried, np.empty_like(part))
    scale = np.abs(expected).max()
    assert np.abs(got.reshape(-1) - expected).max() < 1e-10 * scale
    assert np.abs(carried - state.reshape(-1)).max() < 1e-10 * np.abs(state).max()


def test_levels_do_not_depend_on_when_they_are_asked_for():
    """Complete ticks wait in the buffer until it is full or levels are asked for; asking after every block
    (ticks measured one or two at a time) or only at the end gives the same levels, and the interval counts the
    waiting ticks."""
    rate = 32000
    x = pink_noise(rate, 12, seed=9) * np.repeat(np.random.default_rng(2).uniform(0.05, 1, 48), rate // 4)
    eager, lazy = LevelMeter(rate, keep_seconds=20), LevelMeter(rate, keep_seconds=20)
    block = rate // 10
    for k in range(0, x.size, block):
        eager.push_channels(x[None, k:k + block].astype(np.float32))
        lazy.push_channels(x[None, k:k + block].astype(np.float32))
        assert eager.interval_seconds == lazy.interval_seconds == (k + block) // (rate // 4) * 0.25
        eager.levels_between(0, 1)
    for a, b in [(eager.total(), lazy.total()), (eager.levels_between(3, 9.5), lazy.levels_between(3, 9.5)),
                 (eager.take_interval(), lazy.take_interval())]:
        for name in ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-9), name
        assert np.allclose(list(a.bands.values()), list(b.bands.values()), atol=1e-9) and a.seconds == b.seconds


def test_the_meter_keeps_a_copy_of_what_it_is_given_and_its_memory_is_flat():
    """A microphone may hand over the same buffer each time: the meter copies the samples it waits on.  What it
    holds does not grow with the stream (the ticks it keeps for levels_between, its buffers)."""
    import tracemalloc

    rate = 16000
    x = (pink_noise(rate, 20, seed=5) * 0.3).astype(np.float32)
    copied, reused = LevelMeter(rate, keep_seconds=5), LevelMeter(rate, keep_seconds=5)
    buffer = np.empty((1, rate // 10), np.float32)
    for k in range(0, x.size, rate // 10):
        copied.push_channels(x[None, k:k + rate // 10].copy())
        buffer[0] = x[k:k + rate // 10]
        reused.push_channels(buffer)
    assert copied.total().LAeq == reused.total().LAeq and copied.total().LA50 == reused.total().LA50
    tracemalloc.start()
    try:
        held = []
        for _ in range(4):
            reused.push(x)
            reused.take_interval()
            reused.levels_between(0, 1)
            held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert held[-1] - held[0] < 20_000, held  # 60 s more of audio: nothing kept
    assert len(reused.ticks) == 5 / 0.25 + 2


def test_a_window_within_a_tick_gets_the_nearest_tick_and_of_two_as_near_the_earlier():
    rate = 8000
    x = tone(1000, rate=rate, seconds=5, rms=0.1) * np.tile(np.repeat([1.0, 5.0], rate // 4), 10)  # -20, -6 dBFS
    meter = LevelMeter(rate, keep_seconds=1)  # keeps 6 ticks: tick 18 is in the row before tick 17's
    meter.push(x)
    meter.finish()
    assert meter.levels_between(4.45, 4.55).LAeq == pytest.approx(-6.0, abs=0.5)  # tick 17, not 18
    assert meter.levels_between(4.55, 4.6).LAeq == pytest.approx(-20.0, abs=0.5)  # tick 18, nearest
    assert [t.start for t in meter.ticks] == [k * rate // 4 for k in range(14, 20)]


def test_digital_silence_has_no_level_and_a_clipped_square_wave_has_one():
    silent = measure(np.zeros(48000 * 2), 48000).total()
    record = silent.to_record()
    assert record["LAeq"] is None and record["LA90"] is None and set(record["bands"].values()) == {None}
    assert "NaN" not in records.dumps(record) and "Infinity" not in records.dumps(record)
    square = np.sign(np.sin(2 * np.pi * 500 * np.arange(48000 * 2) / 48000))
    loud = measure(np.clip(1.5 * square, -1, 1), 48000).total()
    assert all(math.isfinite(getattr(loud, n)) for n in ("LAeq", "LAFmax", "LA90", "LCeq"))
    assert -3 < loud.LAeq < 3


@pytest.mark.parametrize("rate", [8000, 96000])
def test_low_and_high_rates(rate):
    levels = steady(tone(1000, rate=rate, rms=0.1), rate)  # A at 1 kHz: class 1 is +-0.7 dB (8 kHz: +0.16)
    assert levels.LAeq == pytest.approx(-20.0, abs=0.2) and levels.bands["1000"] == pytest.approx(-20, abs=0.1)


def test_predict_and_listen_give_the_same_window_levels(tiny_run):
    clf = SceneClassifier.from_file(tiny_run.model_path, window_seconds=1.0, hop_seconds=0.5, calibration_db=100)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(16000 * 5) * np.repeat(rng.uniform(0.01, 0.3, 10), 8000)).astype(np.float32)
    stereo = np.stack([x, 0.5 * x])
    windows = clf.classify_waveform(stereo, sample_rate=16000).windows
    stream = clf.stream(input_rate=16000, channels=2)
    decisions = []
    for part in np.array_split(stereo, 37, axis=1):
        decisions += stream.push(part)
    assert len(decisions) >= len(windows) - 1
    for w, d in zip(windows, decisions):
        assert d.levels.calibrated and w.levels.LAeq == pytest.approx(d.levels.LAeq, abs=1e-6)
        assert w.levels.LA90 == pytest.approx(d.levels.LA90, abs=1e-6)
        assert np.allclose(list(w.levels.bands.values()), list(d.levels.bands.values()), atol=1e-6)
    record = d.to_record(clf.classes)
    assert record["levels"]["calibrated"] is True and record["levels"]["reference"] == "dB SPL"


def test_predict_reports_levels_in_json_and_csv(tiny_run, tmp_path, capsys):
    path = tmp_path / "noise.wav"
    sf.write(str(path), 0.1 * np.random.default_rng(2).standard_normal(8000 * 3), 8000)
    run = ["predict", str(tiny_run.model_path), str(path)]

    def output(*extra):
        assert main(run + list(extra)) == 0
        return capsys.readouterr().out

    plain = json.loads(output("--format", "json"))[0]
    assert plain["levels"]["calibrated"] is False and plain["levels"]["reference"] == "dBFS"
    assert plain["levels"]["LAeq"] < 0 and all("levels" in w for w in plain["windows"])
    assert list(plain["levels"]["bands"])[-1] == "3150"
    calibrated = json.loads(output("--format", "json", "--calibration-db", "110"))[0]
    assert calibrated["levels"]["LAeq"] == pytest.approx(plain["levels"]["LAeq"] + 110, abs=0.11)
    header, row = output("--format", "csv", "--calibration-db", "110").splitlines()[:2]
    assert "LAeq" in header.split(",") and row.endswith(",dB SPL,")
    assert main(run + ["--calibration-db", "nan"]) == 2
    err = capsys.readouterr().err
    assert "--calibration-db" in err and err.count("\n") == 1


# ---- day-evening-night levels (soundscene.core.daylevels) ---------------------------------------------------

def _hourly(day, levels_by_hour, zone):
    from datetime import datetime, timedelta

    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return [(start + timedelta(hours=h), start + timedelta(hours=h + 1), level) for h, level in levels_by_hour]


def test_lden_of_a_steady_level_is_6_4_db_above_it():
    """EU Directive 2002/49/EC: day 12 h, evening 4 h (+5 dB), night 8 h (+10 dB)."""
    from datetime import date, timezone

    from soundscene.core.daylevels import day_levels

    day = date(2026, 6, 1)
    intervals = _hourly(day, [(h, 60.0) for h in range(7, 31)], timezone.utc)  # 07:00 .. 07:00 next day
    (result,) = day_levels(intervals)
    assert (result.Lday, result.Levening, result.Lnight) == pytest.approx((60.0, 60.0, 60.0))
    assert result.Lden == pytest.approx(10 * math.log10((12 * 1e6 + 4 * 10 ** 6.5 + 8 * 1e7) / 24))  # 66.4
    assert result.coverage == {"day": 1.0, "evening": 1.0, "night": 1.0} and result.to_dict()["Lden"] == 66.4


def test_the_night_belongs_to_the_day_it_starts_and_gaps_are_coverage_not_quiet():
    from datetime import date, datetime, timedelta, timezone

    from soundscene.core.daylevels import Periods, day_levels

    zone = timezone(timedelta(hours=2))
    day = date(2026, 6, 1)
    # day 50 dB; evening: 19-21 at 70 dB, 21-23 no level (a dead microphone); night only 23-03 at 40 dB
    intervals = _hourly(day, [(h, 50.0) for h in range(7, 19)] + [(19, 70.0), (20, 70.0), (21, None), (22, None)]
                        + [(h, 40.0) for h in range(23, 27)], zone)
    (result,) = day_levels(intervals)
    assert result.Levening == pytest.approx(70.0) and result.coverage["evening"] == 0.5
    assert result.Lnight == pytest.approx(40.0) and result.coverage["night"] == 0.5
    # one interval across a boundary is shared: 18:30-19:30 at 80 dB adds 30 min to day and evening
    (shared,) = day_levels([(datetime(2026, 6, 1, 18, 30, tzinfo=zone), datetime(2026, 6, 1, 19, 30, tzinfo=zone),
                             80.0)])
    assert shared.coverage["day"] == pytest.approx(0.5 / 12) and shared.coverage["evening"] == pytest.approx(0.5 / 4)
    assert shared.Lnight is None and shared.Lden is None
    # periods a member state shifted: day 06-18, evening 18-22, night 22-06
    (shifted,) = day_levels(intervals, periods=Periods(day=6, evening=18, night=22))
    assert shifted.Levening == pytest.approx(10 * math.log10((10 ** 5 + 2 * 10 ** 7) / 3))  # 18 at 50, 19-20 at 70
    with pytest.raises(ValueError):
        Periods(day=7, evening=6, night=23)
