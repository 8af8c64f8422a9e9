"""The batch augmentations: shapes, zero strength, the exact effect of each, reproducibility."""

import math

import numpy as np
import pytest
import torch

from soundscene.training.augment import (Augmenter, freq_mixstyle, mixup, mixup_params, random_gain, soft_targets,
                                spec_mask, time_roll)
from soundscene.config import AugmentConfig, Config, FeatureConfig
from soundscene.core.features import FrontEnd

SHAPE = (8, 2, 40, 50)  # batch, channels, rows, frames
STRONG = AugmentConfig(mixup_alpha=0.3, roll_frames=30, time_masks=2, time_mask_frames=12, freq_masks=2,
                       freq_mask_rows=6, gain_db=6.0, mixstyle_p=1.0, mixstyle_alpha=0.3)


def _patches(shape=SHAPE, seed=0):
    g = torch.Generator().manual_seed(seed)
    # distinct per-row levels and spreads, as log-mel dB rows have
    rows = shape[-2]
    level = torch.linspace(-60, -10, rows).view(rows, 1)
    return torch.randn(shape, generator=g) * (1 + torch.rand(shape[0], 1, rows, 1, generator=g) * 4) + level


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


AUGMENTATIONS = {
    "mixup": lambda x, g: mixup(x, torch.arange(len(x)) % 3, alpha=0.4, n_classes=3, generator=g)[0],
    "time_roll": lambda x, g: time_roll(x, max_frames=7, generator=g),
    "time_mask": lambda x, g: spec_mask(x, masks=2, width=5, axis=-1, generator=g),
    "freq_mask": lambda x, g: spec_mask(x, masks=2, width=5, axis=-2, generator=g),
    "gain_logmel": lambda x, g: random_gain(x, max_db=6, generator=g),
    "gain_mfcc": lambda x, g: random_gain(x, max_db=6, kind="mfcc", n_mels=40, n_mfcc=40, generator=g),
    "freq_mixstyle": lambda x, g: freq_mixstyle(x, p=1.0, alpha=0.3, generator=g),
}


@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_reproducible(name, dtype):
    x = _patches().to(dtype)
    before = x.clone()
    a = AUGMENTATIONS[name](x, _gen(5))
    b = AUGMENTATIONS[name](x, _gen(5))
    c = AUGMENTATIONS[name](x, _gen(6))
    assert a.shape == x.shape and a.dtype == dtype and a.device == x.device
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c) and not torch.equal(a, x)
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # never in place


def test_zero_strength_is_a_no_op():
    x = _patches()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    assert time_roll(x, max_frames=0) is x
    assert spec_mask(x, masks=0, width=5) is x and spec_mask(x, masks=0, width=5, axis=-2) is x
    assert random_gain(x, max_db=0) is x and random_gain(x, max_db=0, kind="mfcc") is x
    assert freq_mixstyle(x, p=0, alpha=0.3) is x
    mixed, targets = mixup(x, labels, alpha=0, n_classes=3)
    assert mixed is x
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(labels, 3).float())

    aug = Augmenter(AugmentConfig(), n_classes=3)
    assert aug.enabled == []
    out, targets = aug(x, labels)
    assert out is x
    assert targets.dtype == torch.float32 and targets.shape == (8, 3)
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(labels, 3).float())


def test_mixup_mixes_patches_and_targets_with_the_recorded_weights():
    x = _patches()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mixed, targets = mixup(x, labels, alpha=0.4, n_classes=4, generator=_gen(3))
    lam, perm = mixup_params(len(x), alpha=0.4, generator=_gen(3))  # the same draws, recomputed
    assert lam.shape == (8,) and (lam >= 0.5).all() and (lam <= 1).all()
    assert sorted(perm.tolist()) == list(range(8))
    lam4 = lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(mixed, lam4 * x + (1 - lam4) * x[perm])
    assert targets.shape == (8, 4) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    torch.testing.assert_close(targets, lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[perm])
    # already soft targets are mixed again and still sum to 1
    _, twice = mixup(mixed, targets, alpha=0.4, generator=_gen(4))
    torch.testing.assert_close(twice.sum(1), torch.ones(8))
    with pytest.raises(ValueError, match="n_classes"):
        mixup(x, labels, alpha=0.4)


def test_soft_targets_checks_its_input():
    torch.testing.assert_close(soft_targets(torch.tensor([2, 0]), n_classes=3),
                               torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    with pytest.raises(ValueError, match="expected 3"):
        soft_targets(torch.full((2, 4), 0.25), n_classes=3)


def test_time_roll_is_a_circular_shift_of_each_patch():
    x = _patches()
    out = time_roll(x, max_frames=7, generator=_gen(2))
    for i in range(len(x)):
        shifts = [s for s in range(-7, 8) if torch.equal(torch.roll(x[i], s, dims=-1), out[i])]
        assert len(shifts) == 1  # one shift within ±7 for the whole patch (all channels and rows)
        # so every row is a permutation of its values
        torch.testing.assert_close(out[i].sort(-1).values, x[i].sort(-1).values, rtol=0, atol=0)
    # shifts beyond the patch length wrap around
    long = time_roll(x, max_frames=500, generator=_gen(2))
    torch.testing.assert_close(long.sort(-1).values, x.sort(-1).values, rtol=0, atol=0)


def _runs(flags):
    """Lengths of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[0], flags.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[::2]


@pytest.mark.parametrize("axis", [-1, -2])
def test_spec_mask_fills_contiguous_runs_with_the_patch_mean(axis):
    x = _patches()
    means = x.mean(dim=(1, 2, 3))
    width = 6
    for masks, seed in [(1, s) for s in range(10)] + [(3, s) for s in range(10)]:
        out = spec_mask(x, masks=masks, width=width, axis=axis, generator=_gen(seed))
        for i in range(len(x)):
            changed = out[i] != x[i]
            # a masked position is masked across all other axes, and holds the patch's mean
            lines = changed.movedim(axis, 0).flatten(1)  # (axis length, everything else)
            masked = lines.all(1)
            assert torch.equal(lines.any(1), masked)
            assert torch.all(out[i].movedim(axis, 0)[masked] == means[i])
            runs = _runs(masked.numpy())
            assert masked.sum() <= masks * width
            if masks == 1:
                assert len(runs) <= 1 and all(r <= width for r in runs)
    # some masks are seen, and at most masks * width positions per patch
    assert (spec_mask(x, masks=2, width=width, axis=axis, generator=_gen(0)) != x).any()
    with pytest.raises(ValueError, match="axis"):
        spec_mask(x, masks=1, width=2, axis=1)


def test_spec_mask_width_larger_than_the_axis():
    x = _patches((4, 1, 5, 20))
    out = spec_mask(x, masks=1, width=50, axis=-2, generator=_gen(0))
    assert out.shape == x.shape


def test_random_gain_on_log_mel_shifts_each_patch_by_one_constant():
    x = _patches()
    out = random_gain(x, max_db=6.0, generator=_gen(7))
    shift = (out - x).flatten(1)
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), rtol=0, atol=1e-4)
    assert (shift[:, 0].abs() <= 6.0).all() and shift[:, 0].std() > 0


def test_random_gain_on_mfcc_moves_only_coefficient_0():
    x = _patches((8, 1, 39, 50))
    out = random_gain(x, max_db=6.0, kind="mfcc", n_mels=40, n_mfcc=13, deltas=True, generator=_gen(7))
    diff = out - x
    torch.testing.assert_close(diff[:, :, 1:], torch.zeros_like(diff[:, :, 1:]), rtol=0, atol=0)
    c = diff[:, :, 0] / math.sqrt(40)
    torch.testing.assert_close(c, c[..., :1].expand_as(c), rtol=0, atol=1e-4)
    assert (c.abs() <= 6.0 + 1e-5).all()
    # the same draw as log-mel: the offset is c dB, scaled by sqrt(n_mels)
    logmel = random_gain(x, max_db=6.0, generator=_gen(7)) - x
    torch.testing.assert_close(c, logmel[:, :, 0], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="39 rows, expected 13"):
        random_gain(x, max_db=6.0, kind="mfcc", n_mels=40, n_mfcc=13, generator=_gen(7))
    with pytest.raises(ValueError, match="n_mels"):
        random_gain(x, max_db=6.0, kind="mfcc")


def test_mfcc_gain_rule_matches_the_front_end():
    """A gain of c dB on the waveform moves the front end's MFCC 0 by c * sqrt(n_mels) and nothing else."""
    sr, c = 16000, 4.5
    cfg = FeatureConfig(kind="mfcc", deltas=False, top_db=None)
    fe = FrontEnd(cfg, sample_rate=sr)
    rng = np.random.default_rng(0)
    t = np.arange(sr) / sr
    y = (0.1 * rng.standard_normal(sr) + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wave = torch.from_numpy(y)[None]
    plain = fe(wave)
    louder = fe(wave * 10 ** (c / 20))
    diff = louder - plain
    torch.testing.assert_close(diff[:, 0], torch.full_like(diff[:, 0], c * math.sqrt(cfg.n_mels)), rtol=0, atol=1e-3)
    torch.testing.assert_close(diff[:, 1:], torch.zeros_like(diff[:, 1:]), rtol=0, atol=1e-3)
    # end to end: the augmentation applied to the plain features gives the front end's features of the
    # waveform with the gain it drew
    gained = random_gain(plain[:, None], max_db=6.0, kind="mfcc", n_mels=cfg.n_mels, n_mfcc=cfg.n_mfcc,
                         generator=_gen(0))[:, 0]
    torch.testing.assert_close(gained[:, 1:], plain[:, 1:], rtol=0, atol=0)
    drawn = float((gained - plain)[0, 0, 0]) / math.sqrt(cfg.n_mels)
    assert 0 < abs(drawn) <= 6.0
    torch.testing.assert_close(gained, fe(wave * 10 ** (drawn / 20)), rtol=0, atol=1e-3)


def _row_stats(x):
    return x.mean(dim=(1, 3)), x.var(dim=(1, 3), correction=0).sqrt()  # (batch, rows)


def test_freq_mixstyle_mixes_row_statistics_between_partners():
    x = _patches()
    mu, sd = _row_stats(x)
    out = freq_mixstyle(x, p=1.0, alpha=1e6, generator=_gen(0))  # lam ~ 0.5
    out_mu, out_sd = _row_stats(out)
    partners = []
    for i in range(len(x)):
        j = int(((out_mu[i] - (mu[i] + mu) / 2).abs().amax(1)).argmin())
        partners.append(j)
        torch.testing.assert_close(out_mu[i], (mu[i] + mu[j]) / 2, rtol=0, atol=2e-3)
        torch.testing.assert_close(out_sd[i], (sd[i] + sd[j]) / 2, rtol=2e-3, atol=2e-3)
    assert sorted(partners) == list(range(len(x)))  # a permutation
    # any alpha: each row mean lies between the patch's own and its partner's
    out = freq_mixstyle(x, p=1.0, alpha=0.3, generator=_gen(1))
    out_mu, _ = _row_stats(out)
    for i in range(len(x)):
        lo, hi = torch.minimum(mu[i], mu), torch.maximum(mu[i], mu)
        inside = ((out_mu[i] >= lo - 1e-3) & (out_mu[i] <= hi + 1e-3)).all(1)
        assert inside.any()


def test_freq_mixstyle_applies_per_batch_with_probability_p():
    x = _patches()
    applied = 0
    for seed in range(40):
        out = freq_mixstyle(x, p=0.5, alpha=0.3, generator=_gen(seed))
        if torch.equal(out, x):
            continue
        applied += 1
        assert not torch.isclose(out, x).all(dim=(1, 2, 3)).all()  # whole batch at once
    assert 8 <= applied <= 32


def test_augmenter_with_everything_on():
    x = _patches()
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    aug = Augmenter(STRONG, n_classes=5, seed=3)
    assert aug.enabled == ["gain", "roll", "freq_mixstyle", "time_mask", "freq_mask", "mixup"]
    a, ta = aug(x, labels)
    assert a.shape == x.shape and a.dtype == x.dtype and ta.shape == (8, 5) and ta.dtype == torch.float32
    torch.testing.assert_close(ta.sum(1), torch.ones(8))
    a2, _ = aug(x, labels)  # the generator moves on
    assert not torch.equal(a, a2)
    b, tb = Augmenter(STRONG, n_classes=5, seed=3)(x, labels)  # the same seed: the same batch
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ta, tb, rtol=0, atol=0)
    c, _ = Augmenter(STRONG, n_classes=5, seed=4)(x, labels)
    assert not torch.equal(a, c)


def test_augmenter_from_config_reads_features():
    cfg = Config().with_overrides({"features.kind": "mfcc", "augment.gain_db": 3.0, "augment.mixup_alpha": 0.2,
                                   "train.seed": 9})
    aug = Augmenter.from_config(cfg, n_classes=4)
    assert (aug.feature_kind, aug.n_mels, aug.n_mfcc, aug.deltas, aug.seed) == ("mfcc", 40, 13, True, 9)
    assert aug.enabled == ["gain", "mixup"]
    x = _patches((6, 1, 39, 30))
    out, targets = aug(x, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert out.shape == x.shape and targets.shape == (6, 4)
    # mixup off would leave rows 1.. untouched
    gain_only = Augmenter.from_config(cfg.with_overrides({"augment.mixup_alpha": 0.0}), n_classes=4)
    out, targets = gain_only(x, torch.tensor([0, 1, 2, 3, 0, 1]))
    torch.testing.assert_close(out[:, :, 1:], x[:, :, 1:], rtol=0, atol=0)
    assert not torch.equal(out[:, :, 0], x[:, :, 0])
