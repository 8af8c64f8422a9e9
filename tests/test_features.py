"""The torch front end against librosa on the same signals.

Tolerances: log-mel and MFCC within 1e-3 dB / coefficient units (measured
here: under 3e-5), deltas within 1e-3.  Parity needs matching settings:
centred frames padded with zeros, periodic Hann, power 2, Slaney mel, the
80-dB floor per clip, and edge-aware (Savitzky-Golay "interp") deltas.
"""

import librosa
import numpy as np
import pytest
import torch

from soundscene.config import FeatureConfig
from soundscene.core.features import FrontEnd, cut_patches, deltas, n_patches, power_to_db, stft_power

TOL_DB = 1e-3


def _signals(sample_rate, seconds=2.0, n=3):
    rng = np.random.default_rng(1)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    ramp = np.linspace(0, 1, t.size)
    clips = [
        0.1 * rng.standard_normal(t.size),
        0.5 * np.sin(2 * np.pi * 440 * t) * ramp + 0.01 * rng.standard_normal(t.size),
        0.3 * np.sign(np.sin(2 * np.pi * 3 * t)) * rng.standard_normal(t.size),  # bursts, silent gaps
    ][:n]
    return np.stack(clips).astype(np.float32)


def _librosa_logmel(y, fe: FrontEnd, cfg: FeatureConfig, sr: int):
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                       win_length=fe.win_length, window="hann", center=True,
                                       pad_mode="constant", power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                       fmax=cfg.fmax, htk=False, norm="slaney")
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=cfg.top_db)


@pytest.mark.parametrize("sr, overrides", [
    (22050, {}),
    (48000, {"n_mels": 64, "fmin": 50.0, "fmax": 14000.0}),
    (16000, {"frame_seconds": 0.064, "hop_seconds": 0.032, "n_fft": 2048, "top_db": None}),
])
def test_logmel_matches_librosa(sr, overrides):
    cfg = FeatureConfig(**overrides)
    fe = FrontEnd(cfg, sample_rate=sr)
    y = _signals(sr)
    ours = fe(torch.from_numpy(y)).numpy()
    for k in range(y.shape[0]):
        ref = _librosa_logmel(y[k], fe, cfg, sr)
        assert ours[k].shape == ref.shape
        assert np.max(np.abs(ours[k] - ref)) < TOL_DB


def test_stft_power_matches_librosa():
    y = _signals(22050)[0]
    ours = stft_power(torch.from_numpy(y), n_fft=1024, hop_length=256, win_length=551).numpy()
    ref = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, win_length=551, center=True,
                              pad_mode="constant")) ** 2
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * ref.max())


def test_mfcc_with_deltas_matches_librosa():
    sr = 22050
    cfg = FeatureConfig(kind="mfcc", n_mfcc=13, deltas=True)
    fe = FrontEnd(cfg, sample_rate=sr)
    y = _signals(sr)
    ours = fe(torch.from_numpy(y)).numpy()
    assert ours.shape[1] == 39
    for k in range(y.shape[0]):
        mfcc = librosa.feature.mfcc(y=y[k], sr=sr, n_mfcc=13, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                    win_length=fe.win_length, n_mels=cfg.n_mels, center=True, pad_mode="constant")
        ref = np.concatenate([mfcc, librosa.feature.delta(mfcc, width=9, order=1),
                              librosa.feature.delta(mfcc, width=9, order=2)])
        assert np.max(np.abs(ours[k] - ref)) < TOL_DB


@pytest.mark.parametrize("width, order", [(3, 1), (9, 1), (9, 2), (5, 2)])
def test_deltas_match_librosa_including_edges(width, order):
    x = np.random.default_rng(0).standard_normal((4, 50)).astype(np.float32)
    ours = deltas(torch.from_numpy(x), width=width, order=order).numpy()
    ref = librosa.feature.delta(x, width=width, order=order)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_power_to_db_floor_is_per_clip_not_per_batch():
    loud = torch.full((1, 4, 10), 1.0)
    quiet = torch.full((1, 4, 10), 1e-6)
    quiet[..., 0] = 1e-3
    together = power_to_db(torch.cat([loud, quiet]), top_db=20.0)
    alone = power_to_db(quiet, top_db=20.0)
    torch.testing.assert_close(together[1:], alone)
    assert float(alone.min()) == pytest.approx(-50.0)  # 30 dB peak - 20 dB floor


def test_batch_equals_single():
    sr = 16000
    fe = FrontEnd(FeatureConfig(), sample_rate=sr)
    y = torch.from_numpy(_signals(sr))
    batch = fe(y)
    for k in range(y.shape[0]):
        torch.testing.assert_close(batch[k], fe(y[k]), atol=1e-4, rtol=0)


def test_multichannel_input_keeps_channel_axis():
    fe = FrontEnd(FeatureConfig(), sample_rate=16000)
    y = torch.from_numpy(_signals(16000)).reshape(3, 1, -1).repeat(1, 2, 1)
    out = fe(y)
    assert out.shape == (3, 2, 40, fe.frames(y.shape[-1]))


def test_cut_patches_shape_and_content():
    feats = torch.arange(2 * 3 * 100, dtype=torch.float32).reshape(2, 3, 100)
    patches = cut_patches(feats, patch_frames=30, hop_frames=20)
    assert patches.shape == (2, n_patches(100, patch_frames=30, hop_frames=20), 3, 30) == (2, 4, 3, 30)
    torch.testing.assert_close(patches[1, 2], feats[1, :, 40:70])
    short = cut_patches(feats[..., :10], patch_frames=30, hop_frames=20)
    assert short.shape == (2, 1, 3, 30)
    torch.testing.assert_close(short[0, 0, :, 10:20], feats[0, :, :10])
