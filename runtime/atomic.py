"""Atomic writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from fexport.errors import OutputError


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yield a temporary sibling of `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    _check_writable(parent, path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    target = tmp / path.name
    try:
        yield target
        if not directory:
            _fsync(target)
        _replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _replace(source: Path, path: Path) -> None:
    if source.is_dir() and path.is_dir():
        # Directories cannot be swapped in one rename: move the old one aside first.
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(source, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _check_writable(parent: Path, path: Path) -> None:
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it "
                          "first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable; choose "
                          "another output path")
