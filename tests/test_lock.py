"""Two processes writing one output: the second refuses at once, naming the first and the lock
file; a lock left by a killed process is taken over by the next run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import error_line, run_cli
from fexport.errors import OutputError
from fexport.runtime.files import lock


def _start_extract(model, photos, out, *extra):
    """A real `fexport extract` of the photos listed many times (a run that takes a while)."""
    args = [sys.executable, "-m", "fexport", "extract", str(model), *[str(photos)] * 40, "-o",
            str(out), "--batch-size", "4", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(proc, out, timeout=120):
    """Until the run has written its pid into the lock file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if f"pid {proc.pid} " in lock.lock_path(out).read_text():
                return
        except FileNotFoundError:
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    pytest.fail("the first run never took the lock")


def test_a_second_run_refuses_at_once_while_the_first_one_writes(resnet8_onnx, photos,
                                                                 tmp_path):
    out = tmp_path / "features.npy"
    first = _start_extract(resnet8_onnx, photos, out)
    _wait_for_lock(first, out)
    os.kill(first.pid, signal.SIGSTOP)  # the first run holds the lock and cannot finish
    try:
        # While the first run is stopped, the second one can only end by refusing.
        second = run_cli("extract", resnet8_onnx, photos, "-o", out, check=False, timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 1
    line = error_line(second)
    assert f"being written by another fexport run (pid {first.pid} on " in line
    assert f"its lock is {out}.lock" in line
    assert first.wait(timeout=300) == 0, first.communicate()
    assert np.load(out).shape == (360, 64)
    assert not lock.lock_path(out).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(resnet8_onnx, photos, tmp_path):
    out = tmp_path / "features.npy"
    killed = _start_extract(resnet8_onnx, photos, out)
    _wait_for_lock(killed, out)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert lock.lock_path(out).exists()  # left behind, but no longer held
    proc = run_cli("extract", resnet8_onnx, *[photos] * 40, "-o", out, "--batch-size", "4",
                   "--resume")
    assert "extracted 360 of 360 images" in proc.stdout
    assert not lock.lock_path(out).exists()


def test_the_lock_is_reentrant_in_one_process_and_refuses_another(tmp_path):
    out = tmp_path / "f.npz"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom fexport.runtime.files import lock\n"
         "with lock.exclusive(sys.argv[1]):\n    print('held', flush=True)\n"
         "    time.sleep(60)\n", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"pid {holder.pid} on "):
            with lock.exclusive(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lock.exclusive(out) as first, lock.exclusive(out) as again:
        assert first == again and first.exists()
    assert not first.exists()


def test_another_thread_of_the_same_process_is_refused(tmp_path):
    import threading

    out, errors = tmp_path / "f.npy", []

    def second():
        try:
            with lock.exclusive(out):
                pass
        except OutputError as exc:
            errors.append(str(exc))

    with lock.exclusive(tmp_path / "." / "f.npy"):  # the same file, spelled another way
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "another thread of this process" in errors[0]
