"""One writer per output: a lock file beside it (`OUTPUT.lock`), held for the whole run.

The lock is an flock(2) on that file. The kernel drops it when its process ends, however it ends
(SIGKILL included), so a lock left by a killed run is taken over by the next run without anyone
deleting it; the file's text (pid, host, start time) only serves the message. A second process
that finds the lock held refuses at once instead of waiting. Within one process the lock is
re-entrant, so the CLI can take it before loading a model and the job can take it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from pathlib import Path

from fexport.errors import OutputError

_held: dict[str, list] = {}  # lock path -> [fd, depth, owning thread], for this process
_guard = threading.Lock()


def lock_path(output) -> Path:
    return Path(f"{output}.lock")


@contextlib.contextmanager
def exclusive(output):
    """Hold the output's lock for the `with` block; OutputError if another process holds it."""
    path = os.path.abspath(lock_path(output))
    with _guard:
        entry = _held.get(path)
        if entry is None:
            entry = _held[path] = [_acquire(path, output), 0, threading.get_ident()]
        elif entry[2] != threading.get_ident():  # one writer per output within a process too
            raise OutputError(f"{output} is being written by another thread of this process; "
                              f"its lock is {path}. Write each output from one thread")
        entry[1] += 1
    try:
        yield Path(path)
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[path]
                _release(entry[0], path)


def _acquire(path, output) -> int:
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputError(f"{output} is being written by another fexport run ({holder}); "
                              f"its lock is {path}. Wait for it to finish or stop it (a lock "
                              "left by a process that died is taken over by the next run)")
        if _still_named(fd, path):  # not removed by a holder finishing meanwhile
            _write_holder(fd)
            return fd
        os.close(fd)


def _open(path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create the lock file {path}: {exc.strerror}; choose an "
                          "output in a folder you can write to") from exc


def _still_named(fd, path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _write_holder(fd) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)


def _release(fd, path) -> None:
    """Remove the file while still holding the lock, then let go: a process that opened it
    meanwhile sees that it is no longer named and opens a new one."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)
