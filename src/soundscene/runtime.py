"""Process-level speed settings.

glibc's allocator returns every block over its mmap threshold (at most 32 MiB)
to the system when freed and faults it in again on the next use.  Convolution
workspaces and feature batches are that large, so inference and training steps
pay page faults on every call.  :func:`tune_malloc` keeps freed memory for
reuse instead (no mmap for large blocks, high trim threshold and top pad).
benchmarks/bench_core.py measures the effect; the CLI, :func:`soundscene.train`
and :class:`soundscene.SceneClassifier` call it unless SOUNDSCENE_MALLOC_TUNE=0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_KEEP_BYTES = 1 << 30  # keep up to 1 GiB of freed memory for reuse

_tuned = False


def tune_malloc() -> bool:
    """Keep freed large blocks for reuse (glibc only; a no-op elsewhere).

    Returns True when the settings were applied (now or earlier) in this process.
    Set the environment variable SOUNDSCENE_MALLOC_TUNE=0 to opt out.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("SOUNDSCENE_MALLOC_TUNE", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_BYTES), (_M_TOP_PAD, 64 << 20)))
    _tuned = ok
    return ok
