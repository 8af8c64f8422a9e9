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
