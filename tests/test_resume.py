"""Crash-safe, resumable extraction: SIGKILL mid-run and mid-assembly, then `--resume` gives the
uninterrupted run's bytes; torn manifests and orphan shards; refusals instead of overwrites."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import error_line, run_cli
from fexport.errors import ImageError, OutputError
from fexport.runtime import FeatureExtractor, decoding, extract_to_file
from fexport.runtime.files import sinks
from readback import read_features

COPIES = 30  # 9 photos x 30 + 2 bad files = 272 inputs, 68 batches of 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photo_paths):
    """Hundreds of real photos (hard links, so no disk is spent) and two bad files."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(COPIES):
        for path in photo_paths:
            _link(path, folder / f"{i:02d}_{Path(path).name}")
    (folder / "05_empty.jpg").write_bytes(b"")
    (folder / "17_text.png").write_text("not a picture\n")
    return folder


def _link(source, target):
    try:
        os.link(source, target)
    except OSError:  # another filesystem: copy instead
        target.write_bytes(Path(source).read_bytes())


@pytest.fixture(scope="module")
def reference(resnet8_onnx, corpus, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("reference") / "f.npz"
    run_cli("extract", resnet8_onnx, corpus, "-o", out, "-b", "4")
    return out.read_bytes()


def start_cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "fexport", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})


def wait_until(condition, proc, limit=300):
    """Poll until `condition()`; fails if the process ends first (a bound, not a measurement)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, "the run ended before the point where it was to be killed"
        assert time.monotonic() < deadline, "the run never reached the point to kill it"
        time.sleep(0.005)


def manifest_lines(parts: Path) -> list[dict]:
    data = (parts / "manifest.jsonl").read_bytes()
    return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def test_sigkill_mid_run_then_resume_is_byte_identical(resnet8_onnx, corpus, reference,
                                                        tmp_path):
    out, parts = tmp_path / "f.npz", tmp_path / "f.npz.parts"
    args = ("extract", resnet8_onnx, corpus, "-o", out, "-b", "4")
    proc = start_cli(*args)
    wait_until(lambda: (parts / "manifest.jsonl").exists() and manifest_lines(parts), proc)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL and not out.exists()
    committed = manifest_lines(parts)
    assert 1 <= len(committed) < 68  # killed mid-run, after at least one batch
    refused = run_cli(*args, check=False)
    assert refused.returncode == 1 and "pass --resume to continue it" in error_line(refused)
    resumed = run_cli(*args, "--resume")
    # Nothing committed is redone: the run restarts at the end of the last manifest line.
    assert f"resumed: {committed[-1]['end']} of 272 inputs" in resumed.stdout
    assert out.read_bytes() == reference
    assert not parts.exists() and not list(tmp_path.glob(".f.npz*"))


def _shared_memory_of(pid: int) -> list[str]:
    """The decoding ring of process `pid` in /dev/shm (runtime/decoding.py names it by pid)."""
    prefix = f"{decoding.SEGMENT_PREFIX}{pid}-"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="POSIX shared memory in /dev/shm")
def test_sigkill_with_decoding_processes_leaks_no_shared_memory_then_resume(
        resnet8_onnx, corpus, reference, tmp_path):
    out, parts = tmp_path / "f.npz", tmp_path / "f.npz.parts"
    args = ("extract", resnet8_onnx, corpus, "-o", out, "-b", "4", "--decode", "processes",
            "--workers", "2")
    proc = start_cli(*args)
    wait_until(lambda: (parts / "manifest.jsonl").exists() and manifest_lines(parts), proc)
    assert _shared_memory_of(proc.pid)  # the batches decode in shared memory
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    # The decoding processes see their parent gone and exit; Python's resource tracker then
    # unlinks the segment. A bound of 60 s, not a measurement (it takes well under a second).
    deadline = time.monotonic() + 60
    while _shared_memory_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _shared_memory_of(proc.pid)
    resumed = run_cli(*args, "--resume")
    # The same bytes as a run with threads: the features and the two bad files, each named.
    assert "resumed:" in resumed.stdout and out.read_bytes() == reference
    assert not parts.exists()


def test_sigkill_during_assembly_keeps_the_old_output_then_resume(resnet8_onnx, corpus,
                                                                   reference, tmp_path):
    out, marker = tmp_path / "f.npz", tmp_path / "assembling"
    out.write_bytes(b"the output of an earlier run")
    args = ("extract", resnet8_onnx, corpus, "-o", out, "-b", "4")
    proc = start_cli(*args, "--overwrite", env={"FEXPORT_TEST_PAUSE_IN_ASSEMBLY": marker})
    wait_until(marker.exists, proc)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert out.read_bytes() == b"the output of an earlier run"  # old file whole, never half
    half = list(tmp_path.glob(".f.npz.*.tmp/f.npz"))
    assert len(half) == 1 and half[0].stat().st_size > 0  # killed mid-write of the new one
    run_cli(*args, "--resume")
    assert out.read_bytes() == reference
    assert not (tmp_path / "f.npz.parts").exists() and not list(tmp_path.glob(".f.npz*"))


@pytest.fixture(scope="module")
def extractor(resnet8_onnx):
    return FeatureExtractor(resnet8_onnx, device="cpu")


@pytest.fixture(scope="module")
def inputs(photo_paths, tmp_path_factory):
    """20 inputs, 3 of them bad, so batches of 3 hold failures on both sides of a crash."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("no")
    return photo_paths + [str(folder / "empty.jpg")] + photo_paths + [str(folder / "text.png"),
                                                                        str(folder / "empty.jpg")]


class Crash(Exception):
    """Stands for the process dying right after a batch was committed."""


def crash_after(batches):
    seen = []

    def on_progress(count):
        seen.append(count)
        if len(seen) == batches:
            raise Crash()
    return on_progress


@pytest.mark.parametrize("suffix", sinks.FORMATS)
def test_resume_gives_identical_files_in_every_format(extractor, inputs, tmp_path, suffix,
                                                      monkeypatch):
    # Row groups of 5 rows, so parquet groups straddle the batches of 3 and the crash.
    monkeypatch.setattr(sinks, "PARQUET_ROW_GROUP_BYTES", 5 * 4 * extractor.feature_dim)
    (tmp_path / "whole").mkdir()
    expected = tmp_path / "whole" / f"f{suffix}"
    extract_to_file(extractor, inputs, expected, batch_size=3)
    out, parts = tmp_path / f"f{suffix}", tmp_path / f"f{suffix}.parts"
    with pytest.raises(Crash):
        extract_to_file(extractor, inputs, out, batch_size=3, on_progress=crash_after(3))
    (parts / "00000003.npy").write_bytes(b"half a shard")  # written, its line never was
    with open(parts / "manifest.jsonl", "ab") as f:
        f.write(b'{"shard": 3, "sta')  # the append that was cut short
    summary = extract_to_file(extractor, inputs, out, batch_size=3, mode="resume")
    assert summary.resumed == 9 and summary.extracted == 18 and len(summary.failures) == 3
    for want, got in zip(sinks.outputs(expected), sinks.outputs(out)):
        assert want.exists() == got.exists(), got
        assert not want.exists() or want.read_bytes() == got.read_bytes(), got
    paths, features, failures = read_features(out)
    good = [p for p in inputs if "empty" not in p and "text" not in p]
    assert paths == good and set(failures) == set(inputs) - set(good)
    np.testing.assert_array_equal(features, extractor.extract(good, batch_size=3))


def crashed_store(extractor, inputs, out):
    with pytest.raises(Crash):
        extract_to_file(extractor, inputs, out, batch_size=3, on_progress=crash_after(2))
    return Path(f"{out}.parts")


def test_resume_refuses_other_inputs_options_or_model(extractor, inputs, tmp_path):
    out = tmp_path / "f.npz"
    crashed_store(extractor, inputs, out)
    with pytest.raises(OutputError, match=r"the input list differs .*\(21 inputs then, 20 now; "
                                          r"input #20 was '.*empty.jpg', is \(none\)\)"):
        extract_to_file(extractor, inputs[:-1], out, batch_size=3, mode="resume")
    with pytest.raises(OutputError, match=r"--batch-size differs .*\(3 then, 4 now\)"):
        extract_to_file(extractor, inputs, out, batch_size=4, mode="resume")
    for changed in (dict(resample="bilinear"), dict(decode_quality="fast")):
        other = FeatureExtractor(extractor.path, device="cpu", **changed)
        with pytest.raises(OutputError, match=r"image loading \(.*--decode-quality\) differs"):
            extract_to_file(other, inputs, out, batch_size=3, mode="resume")
    with pytest.raises(OutputError, match="pass --resume to continue it"):
        extract_to_file(extractor, inputs, out, batch_size=3)
    assert not out.exists() and Path(f"{out}.parts").exists()  # refusals change nothing


def test_resume_refuses_a_changed_model_file(resnet8_onnx, inputs, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(resnet8_onnx.read_bytes())
    extractor = FeatureExtractor(model, device="cpu")
    crashed_store(extractor, inputs, tmp_path / "f.npz")
    with open(model, "ab") as f:
        f.write(b"\0")  # the file changed since the interrupted run
    with pytest.raises(OutputError, match=r"the model file differs .*sha256"):
        extract_to_file(extractor, inputs, tmp_path / "f.npz", batch_size=3, mode="resume")


def test_existing_outputs_need_overwrite(extractor, inputs, tmp_path):
    out = tmp_path / "f.npy"
    extract_to_file(extractor, inputs[8:11], out, batch_size=3)  # one of them fails
    before = out.read_bytes()
    assert (tmp_path / "f.failures.tsv").exists()
    for mode, words in (("new", "already exists: pass --overwrite"),
                        ("resume", "nothing to resume")):
        with pytest.raises(OutputError, match=words):
            extract_to_file(extractor, inputs[:2], out, batch_size=3, mode=mode)
    assert out.read_bytes() == before
    summary = extract_to_file(extractor, inputs[:2], out, batch_size=3, mode="overwrite")
    assert summary.extracted == 2 and np.load(out).shape == (2, 64)
    assert not (tmp_path / "f.failures.tsv").exists()  # none now: the stale list is gone


def test_a_damaged_store_is_named_with_the_fix(extractor, inputs, tmp_path):
    parts = crashed_store(extractor, inputs, tmp_path / "f.npz")
    lines = (parts / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    (parts / "manifest.jsonl").write_bytes(lines[0] + b"garbage\n" + lines[1])
    with pytest.raises(OutputError, match=r"store .* is damaged: .*pass --overwrite"):
        extract_to_file(extractor, inputs, tmp_path / "f.npz", batch_size=3, mode="resume")
    summary = extract_to_file(extractor, inputs, tmp_path / "f.npz", batch_size=3, mode="overwrite")
    assert summary.extracted == 18 and not parts.exists()


def test_on_error_fail_keeps_the_work_and_resumes_once_fixed(resnet8_onnx, photo_paths,
                                                             tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, path in enumerate(photo_paths):
        _link(path, folder / f"{i}_{Path(path).name}")
    bad = folder / "7_zbroken.png"  # sorts 9th: batch 4 of 2
    bad.write_bytes(b"not yet a picture")
    args = ("extract", resnet8_onnx, folder, "-o", tmp_path / "f.npz", "-b", "2",
            "--on-error", "fail")
    stopped = run_cli(*args, check=False)
    line = error_line(stopped)
    assert stopped.returncode == 1 and "7_zbroken.png" in line and "the 8 inputs" in line
    assert "--resume" in line
    Image.new("RGB", (40, 30), (9, 99, 199)).save(bad, "PNG")  # the user fixes the file
    assert "resumed: 8 of 10 inputs" in run_cli(*args, "--resume").stdout
    run_cli(*args[:4], tmp_path / "whole.npz", *args[5:])
    assert (tmp_path / "f.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()


def test_resume_and_overwrite_together_is_a_usage_error(resnet8_onnx, photos, tmp_path):
    proc = run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "f.npz", "--resume",
                   "--overwrite", check=False)
    assert proc.returncode == 2 and "contradict" in error_line(proc)


def test_on_error_fail_after_recorded_failures_stops_like_an_uninterrupted_run(
        extractor, inputs, tmp_path):
    crashed_store(extractor, inputs[8:], tmp_path / "f.npz")  # batch 0 holds empty.jpg
    with pytest.raises(ImageError, match="empty.*recorded by the interrupted run"):
        extract_to_file(extractor, inputs[8:], tmp_path / "f.npz", batch_size=3, on_error="fail",
                        mode="resume")
