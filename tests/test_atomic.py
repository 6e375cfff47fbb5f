"""Atomic writes: a failure midway leaves the old file whole and no temporary file behind."""

import errno

import pytest

from fexport.errors import OutputError
from fexport.runtime.files import atomic


class Boom(Exception):
    pass


def test_a_failure_midway_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(Boom):
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new")
            raise Boom()
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_an_os_error_midway_is_an_output_error_naming_the_path(tmp_path):
    path = tmp_path / "f.npz"
    with pytest.raises(OutputError, match=f"cannot write {path}: No space left on device"):
        with atomic.atomic_path(path):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.iterdir())


def test_a_folder_is_replaced_whole(tmp_path):
    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "old.pb").write_bytes(b"old")
    with atomic.atomic_path(folder, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "new.pb").write_bytes(b"new")
    assert [p.name for p in folder.iterdir()] == ["new.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_leftovers_of_a_crash_are_removed_and_nothing_else(tmp_path):
    for name in (".f.npz.abc123.tmp", ".f.npzx.abc.tmp", ".g.npz.abc.tmp"):
        (tmp_path / name).mkdir()
    (tmp_path / "f.npz").write_bytes(b"output")
    atomic.remove_leftovers(tmp_path / "f.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.npzx.abc.tmp", ".g.npz.abc.tmp",
                                                          "f.npz"]
