"""runtime/engines: one extract_to_file for both engines, its settings and Summary, the one
on-error vocabulary, and inputs expanded once, on the committed tiny model against its numpy
reference. No TensorFlow and no Ray cluster (tests/test_ray.py starts one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import blocking
from fexport.errors import ImageError, OutputError, UsageError
from fexport.runtime import FeatureExtractor, Summary, extract_to_file
from fexport.runtime.engines import checked_run, local, ray_engine
from fexport.runtime.files import images
from fexport.runtime.files.inputs import Items, expand, iter_items

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_features.onnx"  # (N, 16, 16, 3) pixels 0..255 in, (N, 4) features out


def _reference():
    spec = importlib.util.spec_from_file_location("make_tiny_onnx", DATA / "make_tiny_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expected_features


expected_features = _reference()


@pytest.fixture(scope="module")
def tiny() -> FeatureExtractor:
    return FeatureExtractor(TINY, device="cpu", threads=1)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """(folder, pixels): seven lossless 16x16 PNGs, pic0..pic6 holding pixels[0..6], the last in
    a subfolder, and "pic3_broken.png" (not an image) sorting between pic3 and pic4."""
    folder = tmp_path_factory.mktemp("pictures")
    (folder / "sub").mkdir()
    pixels = np.random.default_rng(5).integers(0, 256, (7, 16, 16, 3)).astype(np.float32)
    for i, image in enumerate(pixels):
        name = f"sub/pic{i}.png" if i == 6 else f"pic{i}.png"
        Image.fromarray(image.astype(np.uint8)).save(folder / name)
    (folder / "pic3_broken.png").write_bytes(b"not a picture")
    return folder, pixels


def assert_reference(features, pixels):
    np.testing.assert_allclose(features, expected_features(pixels), rtol=1e-5, atol=1e-5)


def test_the_local_engine_writes_the_reference_features_and_a_full_summary(pictures, tmp_path):
    folder, pixels = pictures
    counts = []
    summary = extract_to_file(TINY, [folder], tmp_path / "f.npy", batch_size=3, device="cpu",
                              on_progress=counts.append)
    assert isinstance(summary, Summary) and summary.engine == "local"
    assert (summary.total, summary.extracted, summary.row_shape) == (8, 7, (4,))
    assert summary.failures[0][0] == str(folder / "pic3_broken.png") and len(summary.failures) == 1
    assert summary.written == [str(tmp_path / "f.npy"), str(tmp_path / "f.paths.txt"),
                               str(tmp_path / "f.failures.tsv")]
    assert summary.ran == "onnxruntime cpu fp32"
    assert summary.resumed == 0 and summary.ray_workers is None
    assert counts == [3, 3, 2]
    assert_reference(np.load(tmp_path / "f.npy"), pixels)


def test_batch_arrays_are_split_into_one_row_per_image(tiny, pictures, tmp_path):
    pixels = pictures[1]
    summary = extract_to_file(tiny, pixels, tmp_path / "f.npz", batch_size=4)
    assert (summary.total, summary.extracted) == (7, 7)
    assert_reference(np.load(tmp_path / "f.npz")["features"], pixels)


def test_a_resumed_run_gives_the_uninterrupted_bytes(tiny, pictures, tmp_path):
    folder = pictures[0]
    extract_to_file(tiny, [folder], tmp_path / "whole.npz", batch_size=2)

    done = []

    def dies_after_two_commits(count):  # as a SIGKILL would, between two batches
        done.append(count)
        if len(done) == 2:
            raise InterruptedError("killed")

    with pytest.raises(InterruptedError, match="killed"):
        extract_to_file(tiny, [folder], tmp_path / "f.npz", batch_size=2,
                        on_progress=dies_after_two_commits)
    counts = []
    summary = extract_to_file(tiny, [folder], tmp_path / "f.npz", batch_size=2, mode="resume",
                              on_progress=counts.append)
    assert summary.resumed == 4 and counts == [4, 2, 2]
    assert (tmp_path / "f.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_on_error_takes_skip_or_fail_and_names_them_otherwise(tiny, engine, tmp_path):
    with pytest.raises(UsageError, match=r"'skip' or 'fail'.*not 'raise'"):
        extract_to_file(tiny, [], tmp_path / "f.parquet", on_error="raise", engine=engine)
    with pytest.raises(UsageError, match=r"'skip' or 'fail'.*not 'ignore'"):
        next(tiny.stream([], on_error="ignore"))
    assert not list(tmp_path.iterdir())


def test_on_error_fail_stops_at_the_first_bad_input_and_keeps_the_work(tiny, pictures,
                                                                       tmp_path):
    folder = pictures[0]
    with pytest.raises(ImageError, match=r"pic3_broken\.png: .*--resume"):
        extract_to_file(tiny, [folder], tmp_path / "f.csv", batch_size=2, on_error="fail")
    assert (tmp_path / "f.csv.parts").is_dir() and not (tmp_path / "f.csv").exists()
    with pytest.raises(ImageError, match=r"pic3_broken\.png"):
        list(tiny.stream([folder], batch_size=2, on_error="fail"))
    skipped = [batch.failures for batch in tiny.stream([folder], batch_size=8)]
    assert skipped == [[(str(folder / "pic3_broken.png"), skipped[0][0][1])]]


def test_modes_refuse_replace_and_name_the_accepted_words(tiny, pictures, tmp_path):
    out = tmp_path / "f.npy"
    extract_to_file(tiny, pictures[1][:2], out)
    with pytest.raises(OutputError, match="already exists: pass --overwrite"):
        extract_to_file(tiny, pictures[1][:3], out)
    with pytest.raises(OutputError, match="nothing to resume"):
        extract_to_file(tiny, pictures[1][:3], out, mode="resume")
    assert np.load(out).shape == (2, 4)
    assert extract_to_file(tiny, pictures[1][:3], out, mode="overwrite").extracted == 3
    with pytest.raises(UsageError, match=r"one of new, resume, overwrite .*not 'append'"):
        extract_to_file(tiny, pictures[1], out, mode="append")


def test_the_ray_engine_refuses_what_it_cannot_do_before_ray_starts(tmp_path):
    with pytest.raises(UsageError, match=r"'resume' .* needs a local output folder.*"
                                         r"'overwrite' \(--overwrite\)"):
        checked_run("s3://bucket/f.parquet", engine="ray", mode="resume")
    with pytest.raises(UsageError, match="name it NAME.parquet"):
        checked_run(tmp_path / "f.npz", engine="ray")
    with pytest.raises(UsageError, match="num_workers must be at least 1"):
        checked_run(tmp_path / "f.parquet", engine="ray", num_workers=0)


def test_the_ray_engine_refuses_images_in_memory(pictures):
    with pytest.raises(UsageError, match=r"<array \(16, 16, 3\) float32>: --engine ray reads "
                                         r"image files and URIs"):
        list(ray_engine._keys(expand(pictures[1])))


def test_both_engines_answer_the_one_summary():
    assert ray_engine.Summary is Summary
    assert Summary(total=1, extracted=1).ray_workers is None


@pytest.mark.parametrize("settings, words", [
    ({"engine": "spark"}, r"'local' .* or 'ray' .*not 'spark'"),
    ({"batch_size": 0}, r"batch_size must be a whole number of at least 1, not 0"),
    ({"num_workers": 2}, r"unknown option\(s\) num_workers for engine='local'"),
    ({"engine": "ray", "num_cpus": 2}, r"unknown option\(s\) num_cpus for engine='ray'.*address"),
])
def test_unknown_engines_settings_and_options_are_refused_by_name(tmp_path, settings, words):
    with pytest.raises(UsageError, match=words):
        extract_to_file(TINY, [], tmp_path / "f.parquet", **settings)


def test_options_for_an_open_extractor_are_refused(tiny, pictures, tmp_path):
    with pytest.raises(UsageError, match=r"device: options for opening a model file"):
        extract_to_file(tiny, pictures[1], tmp_path / "f.npy", device="cpu")
    assert not list(tmp_path.iterdir())


def test_a_folder_is_listed_once_from_the_inputs_to_the_batches(tiny, pictures, tmp_path,
                                                                monkeypatch):
    """The CLI hands the inputs to the engine, which lists each folder once and says how many
    images it found (on_listed, the progress line's total)."""
    folder = pictures[0]
    listed, counted = [], []
    real = images.iter_images
    monkeypatch.setattr(images, "iter_images", lambda path: listed.append(path) or real(path))
    summary = extract_to_file(tiny, [folder], tmp_path / "f.npz", batch_size=3,
                              on_listed=counted.append)
    assert listed == [folder] and summary.total == 8 and counted == [8]
    items = expand([folder])
    assert expand(items) is items and list(iter_items(items)) == items


def test_expansion_rules(pictures, tmp_path):
    folder, pixels = pictures
    items = expand([folder, "s3://bucket/images/", pixels[:2], b"\x89PNG", pixels[0]])
    assert isinstance(items, Items) and len(items) == 8 + 1 + 2 + 1 + 1
    assert items[:8] == images.list_images(folder) and items[8] == "s3://bucket/images/"
    assert [a.shape for a in items[9:11]] == [(16, 16, 3)] * 2 and items[11] == b"\x89PNG"
    assert expand(str(folder / "pic0.png")) == [str(folder / "pic0.png")]  # one path alone
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=f"no images found in {empty}"):
        expand([empty])
    with pytest.raises(UsageError, match="no images found in an empty list of inputs"):
        expand(x for x in [])


def test_image_features_comes_from_the_runtime_where_sklearn_is():
    pytest.importorskip("sklearn")
    from fexport.runtime import ImageFeatures

    assert ImageFeatures.__module__ == "fexport.runtime.image_features"


def test_image_features_is_importable_lazily_and_names_its_extra():
    proc = blocking.run_python(("sklearn",), "from fexport.runtime import ImageFeatures\n")
    assert proc.returncode != 0 and 'pip install "fexport[sklearn]"' in proc.stderr
    proc = blocking.run_python((), "import fexport.runtime, sys\n"
                                   "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                                   "('sklearn', 'ray', 'onnx', 'tensorflow', 'keras')))\n")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_the_cli_takes_the_library_s_words_only(tmp_path):
    proc = blocking.run_cli((), "extract", TINY, tmp_path, "-o", tmp_path / "f.npz",
                            "--on-error", "raise")
    assert proc.returncode == 2 and "'skip' or 'fail'" in proc.stderr
    assert "not 'raise'" in proc.stderr and "Traceback" not in proc.stderr


def test_the_stored_identity_names_decode_quality_only_when_fast(tiny_model):
    # Stores written before --decode-quality existed hold no such key, and still resume.
    exact = local.identity(FeatureExtractor(tiny_model), ["a"], 4)
    assert "decode_quality" not in exact["load"]
    fast = local.identity(FeatureExtractor(tiny_model, decode_quality="fast"), ["a"], 4)
    assert fast["load"]["decode_quality"] == "fast"


def test_the_summary_says_where_gpu_decoding_fell_back_to_the_cpu(tiny):
    """With decode="gpu" the run's `ran` adds the tally (FeatureExtractor.decoded); with the
    other decoders it is what ran, as before."""
    from types import SimpleNamespace

    from fexport.runtime.engines import local

    assert local._ran(tiny) == str(tiny.ran)
    gpu = SimpleNamespace(ran="onnxruntime cuda fp16", decoded={
        "gpu": 950, "cpu_fallback": 50, "reasons": {"progressive JPEG": 20, "PNG": 30}})
    assert local._ran(gpu) == ("onnxruntime cuda fp16; 950 decoded on the GPU, 50 on the CPU "
                               "(PNG 30, progressive JPEG 20)")
