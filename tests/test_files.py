"""Atomic writes: the file appears whole, with ordinary permissions, and a failing write leaves nothing."""

import os
import stat

import pytest

from rightreasons.files import atomic_write, atomic_write_text


def test_written_files_get_ordinary_permissions_not_a_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")

    def boom(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.txt", boom)
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
