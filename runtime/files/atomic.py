"""Atomic writes: a crash leaves the old file or the new one, never half of one.

A file is written to a hidden temporary sibling, synced, renamed over the target in one step,
and the folder is synced so that the rename survives a power cut too. A folder (a SavedModel)
cannot be swapped in one rename: the old one is moved aside to `.NAME.old` first, so a crash
between the two renames leaves the previous version there. A crash may leave a hidden
`.NAME.*.tmp` folder behind; it is never mistaken for an output, and `remove_leftovers`
deletes it when the owner of NAME knows it is the only writer.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path

from fexport.errors import OutputError


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yield a temporary sibling of `path`; on success it replaces `path` in one rename.

    Any OSError on the way (a full disk, a read-only folder) becomes an OutputError that names
    the path, and the target is left as it was.
    """
    path = Path(path)
    parent = check_writable(path)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
        target = tmp / path.name
        yield target
        if not directory:
            _fsync(target)
        _replace(target, path)
        fsync_dir(parent)  # the rename itself must reach the disk, not only the data
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def remove_leftovers(path) -> None:
    """Delete the temporary siblings a crash left while writing `path` (call it only when no
    other process can be writing `path`)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


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


def fsync_dir(folder) -> None:
    """Make a rename or a new file in `folder` durable (a no-op where folders cannot sync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def check_writable(path) -> Path:
    """The folder that will hold `path`; OutputError when it is missing or not writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it "
                          "first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable; choose "
                          "another output path")
    return parent
