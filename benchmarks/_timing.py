"""Timing shared by the benchmarks (imported as a sibling module: run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time


def interleaved_times(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Raw times (s) of each function, measured in interleaved rounds so that drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def stream_hop_times(classifiers: dict, *, rate: int, hop: int, hops: int) -> dict:
    """Seconds per hop of each classifier's stream on the same 48-kHz-style stereo noise in 0.1-s blocks (as a
    microphone gives), the streams pushed in interleaved rounds of alternating order; the first window and two
    hops are left out (warm-up).  Returns name -> the list of per-hop times."""
    import numpy as np

    audio = (np.random.default_rng(1).standard_normal((2, hop * (hops + 3))) * 0.05).astype(np.float32)
    blocks = np.split(audio, audio.shape[-1] // (rate // 10), axis=1)
    streams = {name: clf.stream(input_rate=rate, channels=2) for name, clf in classifiers.items()}
    spent = {name: [0.0] for name in classifiers}  # per hop: the time of every push since the last decision
    warm = int(10 * rate) + 2 * hop
    for k, block in enumerate(blocks):
        for name in (list(classifiers) if k % 2 else list(classifiers)[::-1]):
            t = time.perf_counter()
            made = streams[name].push(block)
            spent[name][-1] += time.perf_counter() - t
            if made:
                if k * (rate // 10) > warm:
                    spent[name].append(0.0)
                else:
                    spent[name][-1] = 0.0
    return {name: times[:-1] for name, times in spent.items()}
