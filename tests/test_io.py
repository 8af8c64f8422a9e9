"""Atomic writes (soundscene._io)."""

import os


def test_atomic_writes_have_normal_permissions(tmp_path):
    from soundscene._io import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
