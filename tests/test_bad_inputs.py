"""Every bad input gets a one-line answer and no traceback: a corpus of hostile and odd images
built here (not shipped), broken and foreign ONNX files, model files the exporter cannot load,
and outputs that cannot be written (a read-only folder, a full disk)."""

import contextlib
import csv
import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST_CNN, RESNET8, error_line, run_cli
from readback import read_features


def _png_claiming(width, height) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no data behind it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind +
                                                                                         data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _gif_claiming(width, height) -> bytes:
    data = bytearray(_encoded(Image.new("P", (4, 4)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen size
    return bytes(data)


def _encoded(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _photo(size=(48, 40)):
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray(gradient.astype(np.uint8), "RGB")


def _good_images(jpeg: bytes) -> dict:
    """Odd but valid images, converted by the documented rule: file name -> bytes."""
    photo, frames = _photo(), [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    gray16 = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257))
    return {
        "photo.jpg": jpeg, "cmyk.jpg": _encoded(photo.convert("CMYK"), "JPEG"),
        "gray16.png": _encoded(gray16, "PNG"), "palette.png": _encoded(photo.convert("P"), "PNG"),
        "rgba.png": _encoded(photo.convert("RGBA"), "PNG"),
        "la.png": _encoded(photo.convert("LA"), "PNG"),
        "bilevel.png": _encoded(photo.convert("1"), "PNG"),
        "animated.gif": _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "animated.png": _encoded(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "dot.png": _encoded(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"),
        "sliver.png": _encoded(Image.new("L", (1, 20000), 128), "PNG"),  # absurd, but small
        "png_named.jpg": _encoded(photo, "PNG"),  # mislabeled: read by content
        "int32.tif": _encoded(Image.fromarray(np.arange(600, dtype=np.int32).reshape(20, 30)),
                              "TIFF"),
        "float.tif": _encoded(Image.fromarray(np.ones((20, 30), np.float32)), "TIFF"),
        "tiny.webp": _encoded(photo, "WEBP"),
    }


def _bad_images(jpeg: bytes, png: bytes) -> dict:
    """file name -> (bytes, words of the one-line answer)."""
    return {
        "empty.jpg": (b"", "the file is empty (0 bytes)"),
        "text.jpg": (b"hello, not a picture\n" * 10, "not an image Pillow can read"),
        "truncated.jpg": (jpeg[:len(jpeg) // 3], "damaged or truncated"),
        "truncated.png": (png[:len(png) // 2], "damaged or truncated"),
        "zero_width.png": (_png_claiming(0, 10), "unknown format or a damaged header"),
        "bomb.png": (_png_claiming(40000, 40000), "decompression bomb"),
        "bomb.gif": (_gif_claiming(65535, 65535), "decompression bomb"),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photo_paths):
    folder = tmp_path_factory.mktemp("corpus")
    jpeg = Path(next(p for p in photo_paths if p.endswith(".jpg"))).read_bytes()
    for name, data in _good_images(jpeg).items():
        (folder / name).write_bytes(data)
    bad = {}
    for name, (data, words) in _bad_images(jpeg, _encoded(_photo(), "PNG")).items():
        (folder / name).write_bytes(data)
        bad[name] = words
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    bad["dangling.jpg"] = "cannot read the file (No such file or directory)"
    if hasattr(os, "mkfifo"):  # reading a FIFO would block the run forever
        os.mkfifo(folder / "fifo.jpg")
        bad["fifo.jpg"] = "not a regular file"
    return folder, bad


# The child's own peak (VmHWM, via the bench's reader): ru_maxrss would also count the pytest
# process's memory, which Linux carries across the fork and exec that start the child.
MEASURED_CLI = """
import sys
from fexport.runtime.timing import peak_rss_mib
from fexport.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    print("EXIT", exit.code)
print("MAXRSS_KB", peak_rss_mib() * 1024)
"""


def test_every_bad_image_is_reported_and_every_good_one_extracted(resnet8_onnx, corpus,
                                                                  tmp_path):
    folder, bad = corpus
    out = tmp_path / "f.npz"
    proc = subprocess.run([sys.executable, "-c", MEASURED_CLI, "extract", str(resnet8_onnx),
                           str(folder), "-o", str(out), "--on-error", "skip"],
                          capture_output=True, text=True, timeout=300)
    assert "EXIT 0" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    paths, features, failures = read_features(out)
    good = sorted(str(folder / name) for name in _good_images(b""))
    assert paths == good and features.shape == (len(good), 64) and np.isfinite(features).all()
    assert set(failures) == {str(folder / name) for name in bad}
    for name, words in bad.items():
        assert words in failures[str(folder / name)], name
        assert sum(f"skipped {folder / name}:" in line
                   for line in proc.stderr.splitlines()) == 1, name
    # The bombs claim 1.6 and 4.3 gigapixels: refused from their headers, never decoded.
    peak_mb = float(proc.stdout.split("MAXRSS_KB")[1]) / 1024
    assert peak_mb < 1024, f"peak memory {peak_mb:.0f} MB"


def test_on_error_fail_names_the_first_bad_file(resnet8_onnx, corpus, tmp_path):
    folder, bad = corpus
    proc = run_cli("extract", resnet8_onnx, folder, "-o", tmp_path / "f.npz", "--on-error",
                   "fail", check=False)
    line = error_line(proc)
    first_bad = sorted(bad)[0]
    assert proc.returncode == 1 and f"{folder / first_bad}: " in line and bad[first_bad] in line


@pytest.fixture(scope="module")
def onnx_files(resnet8_onnx, tmp_path_factory):
    """Broken and foreign ONNX files: name -> path."""
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("onnx")
    data = resnet8_onnx.read_bytes()
    files = {"truncated": data[:len(data) // 2], "empty": b""}
    for name, content in files.items():
        (folder / f"{name}.onnx").write_bytes(content)
    proto = onnx.load(str(resnet8_onnx))
    for name, value in (("plain", None), ("bad_contract", "{not json"),
                        ("future_contract", '{"format_version": 99}')):
        del proto.metadata_props[:]
        if value:
            helper.set_model_props(proto, {"fexport.contract": value})
        onnx.save(proto, str(folder / f"{name}.onnx"))
    vector = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "vector",
                               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 10])],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])])
    onnx.save(helper.make_model(vector), str(folder / "vector.onnx"))
    (folder / "folder.onnx").mkdir()
    return folder


ONNX_CASES = {
    "truncated": ([], "cannot load it as an ONNX model"),
    "empty": ([], "the file is empty (0 bytes)"),
    "missing": ([], "no such model file"),
    "folder": ([], "is a folder; expected an .onnx file"),
    "plain": ([], "no fexport metadata, so its input size is unknown; pass input_size=(height, "
                  "width) (CLI: --input-size H W)"),
    "bad_contract": ([], "fexport metadata is not a valid contract"),
    "future_contract": ([], "format_version 99; this fexport reads versions 1, 2, 3"),
    "vector": (["--input-size", "32", "32"], "fexport needs a 4-D image input"),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_broken_and_foreign_onnx_files_are_one_line(onnx_files, photos, tmp_path, case):
    extra, words = ONNX_CASES[case]
    proc = run_cli("extract", onnx_files / f"{case}.onnx", photos, "-o", tmp_path / "f.npz",
                   *extra, check=False)
    assert proc.returncode in (1, 2) and words in error_line(proc)
    assert not list(tmp_path.iterdir())  # nothing written, not even a store


def test_onnx_from_elsewhere_works_with_an_input_size(onnx_files, photos, tmp_path):
    proc = run_cli("extract", onnx_files / "plain.onnx", photos, "-o", tmp_path / "f.npz",
                   "--input-size", "32", "32")
    assert "extracted 9 of 9 images" in proc.stdout
    assert "no fexport metadata" in run_cli("info", onnx_files / "plain.onnx").stdout


@contextlib.contextmanager
def read_only(folder: Path):
    """A folder nothing can be written into, even by root (which ignores permission bits)."""
    folder.chmod(0o555)
    immutable = False
    try:
        if os.access(folder, os.W_OK):
            immutable = subprocess.run(["chattr", "+i", str(folder)],
                                       capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("root without chattr: no way to make a read-only folder here")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_read_only_output_folder_is_one_line(resnet8_onnx, photos, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        proc = run_cli("extract", resnet8_onnx, photos, "-o", folder / "f.npz", check=False)
        assert proc.returncode == 1 and f"cannot write {folder / 'f.npz'}" in error_line(proc)
        assert not list(folder.iterdir())


def _limit_file_size(limit):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_during_assembly_keeps_the_work_for_resume(resnet8_onnx, photos, tmp_path):
    out = tmp_path / "f.csv"
    args = [sys.executable, "-m", "fexport", "extract", str(resnet8_onnx), str(photos), "-o",
            str(out)]
    # Files may not grow past 8 KB, like a disk that fills up: the shards (2.4 KB) fit, the
    # 12 KB CSV does not.
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_file_size(8192))
    line = error_line(proc)
    assert proc.returncode == 1 and f"cannot write {out}: File too large" in line, line
    assert not out.exists() and not list(tmp_path.glob(".f.csv.*"))
    assert (tmp_path / "f.csv.parts" / "manifest.jsonl").stat().st_size > 0
    run_cli("extract", resnet8_onnx, photos, "-o", out, "--resume")  # space was freed
    run_cli("extract", resnet8_onnx, photos, "-o", tmp_path / "whole.csv")
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()


@pytest.fixture(scope="module")
def lambda_h5(tmp_path_factory):
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(5)
    model = tf_keras.Sequential([
        tf_keras.layers.Lambda(lambda t: t * 2.0, input_shape=(8, 8, 3), name="double"),
        tf_keras.layers.Conv2D(2, 3, name="conv"),
    ])
    path = tmp_path_factory.mktemp("lambda") / "lambda.h5"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def lambda_keras(tmp_path_factory):
    """The same model saved by Keras 3 as .keras: Keras's own refusal is a paragraph."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Lambda(lambda t: t * 2.0, name="double"),
                              keras.layers.Conv2D(2, 3, name="conv")])
    path = tmp_path_factory.mktemp("lambda_keras") / "lambda.keras"
    model.save(path)
    return path


def _truncated(source: Path, folder: Path) -> Path:
    path = folder / f"truncated{source.suffix}"
    path.write_bytes(source.read_bytes()[:source.stat().st_size // 2])
    return path


@pytest.mark.parametrize("case", ["truncated .keras", "truncated .h5", "lambda", "lambda .keras"])
def test_model_files_the_exporter_cannot_take_are_one_line(tmp_path, case, lambda_h5,
                                                           lambda_keras):
    model, words = {
        "truncated .keras": (_truncated(MNIST_CNN, tmp_path), "truncated.keras; tried keras"),
        "truncated .h5": (_truncated(RESNET8, tmp_path), "the file may be truncated"),
        "lambda": (lambda_h5, "--unsafe"),
        "lambda .keras": (lambda_keras, "contains a Lambda layer"),
    }[case]
    proc = run_cli("export", model, "-o", tmp_path / "x.onnx", check=False)
    assert proc.returncode == 1 and words in error_line(proc)
    assert not (tmp_path / "x.onnx").exists()


ODD_NAMES = [os.fsdecode(b"caf\xff\xfe.png"), "new\nline.png", "tab\there.png"]


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory):
    """File names with bytes that are not UTF-8, a newline and a tab; the last is no image."""
    folder = tmp_path_factory.mktemp("odd_names")
    for name in ODD_NAMES[:2]:
        _photo().save(folder / name, "PNG")
    (folder / ODD_NAMES[2]).write_bytes(b"not a picture")
    return folder


def test_file_names_of_any_bytes_are_written_not_fatal(resnet8_onnx, odd_names, tmp_path):
    from fexport.runtime import FeatureExtractor, extract_to_file

    extractor = FeatureExtractor(resnet8_onnx, device="cpu")
    keys = sorted(str(odd_names / name) for name in ODD_NAMES)
    for suffix in (".npz", ".csv", ".npy", ".parquet"):
        summary = extract_to_file(extractor, [odd_names], tmp_path / f"{suffix[1:]}{suffix}")
        assert summary.extracted == 2 and summary.failures[0][0] == str(odd_names /
                                                                        ODD_NAMES[2])
    good = [k for k in keys if ODD_NAMES[2] not in k]
    assert list(np.load(tmp_path / "npz.npz")["paths"]) == good  # exact
    with open(tmp_path / "csv.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        assert [row[0] for row in list(csv.reader(f))[1:]] == good  # exact
    lines = (tmp_path / "npy.paths.txt").read_bytes().splitlines()
    assert lines == [os.fsencode(k.replace("\n", "\\n")) for k in good]
    tsv = (tmp_path / "npy.failures.tsv").read_bytes()
    assert tsv.count(b"\n") == 1 and tsv.startswith(os.fsencode(
        str(odd_names / "tab\\there.png")) + b"\t")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "parquet.parquet").column("path").to_pylist() == [
        os.fsencode(k).decode("utf-8", "backslashreplace") for k in good]


def test_odd_file_names_through_the_cli(resnet8_onnx, odd_names, tmp_path):
    proc = run_cli("extract", resnet8_onnx, odd_names, "-o", tmp_path / "f.npy")
    assert "extracted 2 of 3 images" in proc.stdout and proc.stderr.count("skipped") == 1


def test_a_trusted_keras_lambda_file_exports_with_unsafe(tmp_path, lambda_keras):
    proc = run_cli("export", lambda_keras, "-o", tmp_path / "x.onnx", "--unsafe", "--head",
                   "flatten")
    assert "verification passed" in proc.stdout
