"""Pictures: the curves' magnitude responses, and a run over time (scene, ambient level, gain, exposure).

matplotlib's object API only: no backend or pyplot state is touched; PNGs are written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy.signal import sosfreqz

from ..._io import atomic_write
from .curve import band_centres, curve_sos
from .trace import Trace
from .presets import BAND_CENTRES, BAND_LABELS, Curve


def plot_curves(curves: Mapping[str, Curve], path: str | Path, *, sample_rate: int = 48000) -> Path:
    """Magnitude responses (dB over log frequency, 20 Hz .. 20 kHz) of ``curves`` by name, with markers
    at the requested band gains, to a PNG written atomically. Curves are shown before auto-gain (the
    legend gives it). Uses matplotlib's object API only: no backend or pyplot state is touched."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    freqs = np.geomspace(20.0, min(20000.0, 0.999 * sample_rate / 2), 1000)
    kept = band_centres(sample_rate)
    for name, curve in curves.items():
        sos, auto_db = curve_sos(curve, sample_rate=sample_rate)
        response = 20 * np.log10(np.abs(sosfreqz(sos, worN=freqs, fs=sample_rate)[1])) - auto_db
        line, = ax.semilogx(freqs, response, label=f"{name} (auto-gain {auto_db:+.1f} dB)")
        ax.plot(kept, np.array(curve.gains_db)[:len(kept)] + curve.preamp_db, "o", color=line.get_color())
    for fc in BAND_CENTRES:
        ax.axvline(fc, color="0.85", lw=0.8, zorder=0)
    ax.set_xticks(BAND_CENTRES, labels=BAND_LABELS)
    ax.minorticks_off()
    ax.set_xlim(20, 20000)
    ax.set_xlabel("frequency (Hz); dots: requested band gains")
    ax.set_ylabel("gain (dB)")
    ax.set_title(f"Scene equalizer curves before auto-gain ({sample_rate} Hz)")
    ax.grid(True, axis="y", alpha=0.4)
    ax.legend(loc="best")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))




def plot_timeline(trace: Trace, path: str | Path, *, title: str = "", calibrated: bool = False) -> Path:
    """The run over time, four rows sharing the time axis: the scene (coloured spans, labelled), the
    ambient level (each record's LAeq, the follower's smoothed level) with the music's level, the gain
    (the frame gain, the follower's boost, and below the frame gain what the peak limiter took off the
    peaks; shaded where the exposure limiter held the gain) and the dose
    in % of the weekly allowance (when the playback chain is calibrated). ``calibrated``: the levels are
    dB SPL (else relative to full scale)."""
    from matplotlib.figure import Figure

    t = np.array(trace.time)
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[0.6, 1.4, 1.1, 1.0])
    _scene_row(axes[0], t, trace.scene)
    unit = "dB SPL (A)" if calibrated else "dB (A) re full scale"
    _line(axes[1], t, trace.ambient_db, "ambient LAeq (records)", color="0.55", lw=1.0, drawstyle="steps-post")
    _line(axes[1], t, trace.followed_db, "ambient, as followed", color="tab:orange", lw=2.0)
    _line(axes[1], t, trace.level_db, "music at the ear (3-s average)" if calibrated else "music out (3-s average)",
          color="tab:blue", lw=1.2)
    _line(axes[1], t, trace.permitted_db, "permitted by the weekly allowance", color="tab:red", lw=1.0, ls=":")
    axes[1].set_ylabel(unit)
    _gain_row(axes[2], t, trace)
    limited = np.array(trace.limited, dtype=bool)
    if limited.any():
        axes[2].fill_between(t, 0, 1, where=limited, transform=axes[2].get_xaxis_transform(), color="tab:red",
                             alpha=0.15, label="exposure limiter engaged")
    axes[2].set_ylabel("gain (dB)")
    if any(d is not None for d in trace.dose):
        _line(axes[3], t, trace.dose, "weekly dose (ITU-T H.870)", color="tab:red", lw=1.5)
        axes[3].set_ylabel("dose (% of week)")
        axes[3].ticklabel_format(axis="y", useOffset=False)
    else:
        axes[3].text(0.5, 0.5, "no exposure: the playback chain is not calibrated (--headphone-db-spl-at-fs)",
                     ha="center", va="center", transform=axes[3].transAxes, color="0.4")
        axes[3].set_yticks([])
    axes[3].set_xlabel("time (s)")
    for ax in axes[1:]:
        ax.grid(True, alpha=0.35)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, ncols=3 if ax is axes[2] else 1)
    if len(t):
        axes[3].set_xlim(0, max(t[-1], 1e-3))
    title = title or "Equalizer over time"
    axes[0].set_title(title if len(title) <= 110 else title[:107] + "...", fontsize=10)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _gain_row(ax, t: np.ndarray, trace: Trace) -> None:
    """The frame gain (volume, boost, exposure limiter) as a line; under it, filled down to the deepest cut
    of the peak limiter in each row's 0.1 s, the gain the loudest samples got."""
    gain, cut = np.array(trace.gain_db, dtype=float), np.array(trace.peak_reduction_db, dtype=float)
    if len(t) and cut.max() > 0.05:
        ax.fill_between(t, gain, gain - cut, step="post", color="tab:purple", alpha=0.35, lw=0,
                        label=f"peak limiter: the loudest samples' gain (deepest cut {cut.max():.1f} dB)")
    _line(ax, t, trace.gain_db, "gain (volume, boost, exposure limiter)", color="tab:green", lw=1.5)
    if any(b is not None and b != 0 for b in trace.boost_db):
        _line(ax, t, trace.boost_db, "level-following boost", color="tab:orange", lw=1.2, ls="--")
    if len(t):  # room above the curves for the legend's one row
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.3 * (high - low))


def _line(ax, t: np.ndarray, values: list, label: str, **style) -> None:
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    if len(y) and np.isfinite(y).any():
        ax.plot(t, y, label=label, **style)


def _scene_row(ax, t: np.ndarray, scenes: list) -> None:
    """Coloured spans, one per run of the same scene, labelled inside when wide enough."""
    from matplotlib import colormaps

    colours = colormaps["tab20"]
    names = sorted({s for s in scenes if s is not None})
    end = t[-1] if len(t) else 1.0
    k = 0
    while k < len(scenes):
        j = k
        while j + 1 < len(scenes) and scenes[j + 1] == scenes[k]:
            j += 1
        right = t[j + 1] if j + 1 < len(t) else end
        if scenes[k] is not None:
            ax.axvspan(t[k], right, color=colours(names.index(scenes[k]) % 20), alpha=0.8)
            ax.text((t[k] + right) / 2, 0.5, scenes[k], ha="center", va="center", fontsize=9, clip_on=True)
        k = j + 1
    ax.set_yticks([])
    ax.set_ylabel("scene")
