"""Atomic writes (soundscene._io)."""

import os

import pytest


def test_atomic_writes_have_normal_permissions(tmp_path):
    from soundscene._io import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_a_write_that_fails_without_naming_its_file_names_the_target(tmp_path):
    """A full disk under a writer that says only 'No space left on device' (pyarrow): the error names the file
    being written, so `batch` on a full disk says where; the target is left as it was."""
    import errno

    from soundscene._io import atomic_write

    def full(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out" / "windows.parquet"
    with pytest.raises(OSError) as caught:
        atomic_write(target, full)
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert not target.exists() and list(target.parent.iterdir()) == []
