"""runtime/files/atomic.py: a file or folder is replaced whole or not at all, and nothing
temporary is left beside it."""

import os

import pytest

from fexport.errors import OutputError
from fexport.runtime.files import atomic


def _entries(folder):
    return sorted(os.listdir(folder))


def test_write_bytes_replaces_a_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "out.bin"
    atomic.write_bytes(target, b"first")
    atomic.write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _entries(tmp_path) == ["out.bin"]


def test_an_oserror_midway_is_an_output_error_and_the_old_file_stays(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match=f"cannot write {target}: No space left on device"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the new")
            raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"old"
    assert _entries(tmp_path) == ["out.bin"]


def test_a_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "saved_model"
    for version in ("v1", "v2"):
        with atomic.atomic_path(target, directory=True) as tmp:
            tmp.mkdir()
            (tmp / version).write_text(version)
    assert _entries(target) == ["v2"]
    assert _entries(tmp_path) == ["saved_model"]  # no .saved_model.old, no .tmp


def test_a_missing_folder_is_refused_before_writing(tmp_path):
    with pytest.raises(OutputError, match="does not exist; create it first"):
        atomic.write_bytes(tmp_path / "no" / "out.bin", b"x")


def test_a_read_only_folder_is_refused_before_writing(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        with pytest.raises(OutputError, match="is not writable"):
            atomic.write_bytes(locked / "out.bin", b"x")
    finally:
        locked.chmod(0o700)


def test_remove_leftovers_deletes_only_this_outputs_temporaries(tmp_path):
    name = "out[1].npy"  # glob characters in the name must not widen the match
    for leftover in (f".{name}.abc.tmp", ".out1.npy.abc.tmp", f".{name}.keep", name):
        (tmp_path / leftover).mkdir()
    atomic.remove_leftovers(tmp_path / name)
    assert _entries(tmp_path) == [".out1.npy.abc.tmp", f".{name}.keep", name]


def test_check_writable_returns_the_folder(tmp_path, monkeypatch):
    assert atomic.check_writable(tmp_path / "x.npy") == tmp_path
    monkeypatch.chdir(tmp_path)
    assert atomic.check_writable("x.npy").resolve() == tmp_path.resolve()
