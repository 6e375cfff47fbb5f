"""runtime/files/lock.py: one writer per output, across processes and threads; re-entrant in
one thread; a lock left by a killed process is taken over."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from fexport.errors import OutputError
from fexport.runtime.files import lock

HOLDER = """
import sys
from fexport.runtime.files import lock
with lock.exclusive(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _hold_in_another_process(output):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(output)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_the_lock_file_names_its_holder_and_goes_away(tmp_path):
    out = tmp_path / "f.npy"
    with lock.exclusive(out) as path:
        assert path == tmp_path / "f.npy.lock"
        assert path.read_text().startswith(f"pid {os.getpid()} on ")
    assert not path.exists()


def test_the_lock_is_reentrant_in_one_thread(tmp_path):
    out = tmp_path / "f.npy"
    with lock.exclusive(out):
        with lock.exclusive(out):
            pass
        assert lock.lock_path(out).exists()  # still held by the outer block
    assert not lock.lock_path(out).exists()


def _take(output):
    with lock.exclusive(output):
        pass


def test_another_thread_of_the_process_is_refused(tmp_path):
    out = tmp_path / "f.npy"
    with lock.exclusive(out), ThreadPoolExecutor(1) as pool:
        with pytest.raises(OutputError, match="another thread of this process"):
            pool.submit(_take, out).result()
    _take(out)


def test_another_process_is_refused_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "f.npy"
    holder = _hold_in_another_process(out)
    try:
        with pytest.raises(OutputError, match=f"another fexport run \\(pid {holder.pid} on "):
            with lock.exclusive(out):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with lock.exclusive(out):  # released when the holder finished
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "f.npy"
    holder = _hold_in_another_process(out)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    assert lock.lock_path(out).exists()  # the file stays; the kernel dropped the flock
    with lock.exclusive(out) as path:
        assert path.read_text().startswith(f"pid {os.getpid()} ")
