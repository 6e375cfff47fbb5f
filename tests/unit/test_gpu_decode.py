"""decode="gpu" without a GPU: the word is validated like the others, this host's missing
nvImageCodec or CUDA is named with the extra, the per-file fallback rule is read from real files'
headers, and the device path's resize and I/O binding run on ONNX Runtime's CPU provider, where
they are checked against Pillow and against the plain run. No GPU decoder is faked."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

from fexport import extras
from fexport.errors import UsageError
from fexport.extras import MissingDependencyError
from fexport.precision import decode_quality
from fexport.runtime import FeatureExtractor, doctor, gpu_decode
from fexport.runtime.backends.device_batches import DeviceBatch, DeviceResizer
from fexport.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from fexport.runtime.files import formats, images

NO_NVIMGCODEC = pytest.mark.skipif(extras.installed(gpu_decode.MODULE),
                                   reason="nvImageCodec is installed here")


def _photo(name: str) -> Path:
    skimage = pytest.importorskip("skimage")
    return Path(skimage.__file__).parent / "data" / name


def _jpeg(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(_photo("astronaut.png")).convert("RGB")


def test_an_unknown_decoder_is_refused_with_every_choice(tiny_model):
    with pytest.raises(UsageError, match="decode 'cuda': expected one of threads, processes, "
                                         "gpu$"):
        FeatureExtractor(tiny_model, device="cpu", decode="cuda")


@NO_NVIMGCODEC
def test_asking_for_gpu_decoding_here_names_the_missing_module_and_the_extra(tiny_model):
    with pytest.raises(MissingDependencyError) as caught:
        FeatureExtractor(tiny_model, device="cpu", decode="gpu")
    assert str(caught.value) == ("decode='gpu' (JPEGs decoded on the GPU by nvImageCodec) "
                                 "needs nvidia.nvimgcodec, which is not installed: "
                                 'pip install "fexport[gpu-decode]"')
    assert caught.value.extra == "gpu-decode"


def test_without_onnxruntimes_cuda_provider_the_reason_names_cuda_and_the_extra():
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        pytest.skip("this onnxruntime has CUDA")
    reason = gpu_decode.cuda_problem(providers)
    assert "needs ONNX Runtime's CUDA provider" in reason and "CPUExecutionProvider" in reason
    assert 'pip install "fexport[gpu-decode]"' in reason
    assert gpu_decode.cuda_problem(["CUDAExecutionProvider", *providers]) is None


def test_baseline_jpegs_go_to_the_gpu_in_colour_and_in_grayscale(astronaut):
    assert formats.cpu_reason(_jpeg(astronaut)) is None
    assert formats.cpu_reason(_jpeg(astronaut.convert("L"))) is None
    assert formats.cpu_reason(_jpeg(astronaut, exif=b"Exif\x00\x00" + b"\x00" * 40000)) is None


def test_progressive_cmyk_and_other_formats_go_to_the_cpu(astronaut):
    assert formats.cpu_reason(_jpeg(astronaut, progressive=True)) == "a progressive JPEG"
    assert formats.cpu_reason(_jpeg(astronaut.convert("CMYK"))) == \
        "a CMYK or YCCK JPEG (4 components)"
    assert formats.cpu_reason(_photo("astronaut.png").read_bytes()) == "not a JPEG (PNG)"
    gif = io.BytesIO()
    astronaut.save(gif, "GIF")
    assert formats.cpu_reason(gif.getvalue()) == "not a JPEG (GIF)"
    assert formats.cpu_reason(b"\x00junk") == "not a JPEG (an unknown format)"


def test_a_truncated_jpeg_header_goes_to_the_cpu(astronaut):
    data = _jpeg(astronaut)
    assert formats.cpu_reason(data[:20]) == \
        "a JPEG whose frame header was not found in its first 64 kB"


@pytest.mark.parametrize("name", ["rocket.jpg", "retina.jpg", "coffee.png", "chelsea.png"])
def test_the_rule_agrees_with_pillow_on_real_photos(name):
    """Pillow's own reading of each file: a baseline RGB or L JPEG goes to the GPU, else not."""
    path = _photo(name)
    with Image.open(path) as image:
        baseline = image.format == "JPEG" and not image.info.get("progressive") \
            and image.mode in ("RGB", "L")
    assert (formats.cpu_reason(path.read_bytes()[:formats.HEADER_BYTES]) is None) == baseline


@pytest.mark.parametrize("keep_aspect", [False, True])
@pytest.mark.parametrize("layout,dtype,shape", [("nhwc", "float32", (224, 224, 3)),
                                                ("nchw", "uint8", (3, 224, 224))])
def test_the_device_resize_is_pillows_nearest_pixel_for_pixel(astronaut, keep_aspect, layout,
                                                             dtype, shape):
    """The gather graph on the CPU provider, into a DeviceBatch slot, against files/images.py's
    own resize of the same decoded pixels: equal, for odd sizes and the center crop."""
    options = images.LoadOptions(224, 224, 3, keep_aspect=keep_aspect)
    batch = DeviceBatch(onnxruntime, shape, dtype, 3, device="cpu")
    resizer = DeviceResizer(onnxruntime, dtype, layout, device="cpu")
    sources = [astronaut.crop((0, 0, 509, 301)), astronaut.crop((3, 7, 100, 411)),
               astronaut.resize((224, 224))]  # wider, taller, and already at the size
    for slot, image in enumerate(sources):
        rows, columns = formats.resize_indices(image.size, options)
        resizer.write(batch, slot, np.asarray(image), rows, columns)
    got = np.asarray(batch)
    for slot, image in enumerate(sources):
        expected = images.load_native(image, options)
        pixels = got[slot].transpose(1, 2, 0) if layout == "nchw" else got[slot]
        np.testing.assert_array_equal(pixels, expected)


def test_a_device_batch_runs_through_io_binding_as_the_plain_run(tiny_model, pixels):
    """Host images uploaded into a DeviceBatch (the CPU fallback's path) and run through
    run_on_device give the plain run's features, rows kept as selected."""
    engine = OnnxRuntimeBackend(tiny_model, "cpu")
    batch = DeviceBatch(onnxruntime, pixels.shape[1:], "float32", 8, device="cpu")
    resizer = DeviceResizer(onnxruntime, "float32", "nhwc", device="cpu")
    for slot, image in enumerate(pixels):
        resizer.upload(batch, slot, image)
    full = batch.take(len(pixels))
    expected = engine.run(pixels)
    np.testing.assert_array_equal(engine.run_on_device(full), expected)
    np.testing.assert_array_equal(engine.run_on_device(full[[0, 3]]), expected[[0, 3]])
    np.testing.assert_array_equal(np.asarray(full[[1, 4]]), pixels[[1, 4]])


def test_the_gpu_decode_extra_pins_nvimgcodec_for_the_gpu_extras_cuda():
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    wanted = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    runtime, codec = wanted["gpu-decode"]
    assert runtime == wanted["tensorrt"][0]  # onnxruntime-gpu 1.27 on: CUDA 13
    assert codec == "nvidia-nvimgcodec-cu13[nvjpeg]>=0.9.0.20,<0.10"
    extra = next(e for e in extras.EXTRAS if e.name == "gpu-decode")
    assert extra.modules == (gpu_decode.MODULE,) and extra.distribution == "onnxruntime-gpu"


@NO_NVIMGCODEC
def test_doctor_says_nvimgcodec_is_missing_on_a_bare_install():
    assert doctor.report().gpu_decode == {
        "imports": False, "state": 'not installed: pip install "fexport[gpu-decode]"'}


@NO_NVIMGCODEC
def test_verify_decode_compares_gpu_decoding_only_where_it_runs(tiny_model, image_paths):
    with pytest.raises(UsageError, match="decoding 'cpu' to compare: expected one of fast, gpu"):
        decode_quality.compare(tiny_model, image_paths * 2, candidate="cpu", device="cpu")
    with pytest.raises(MissingDependencyError, match="fexport\\[gpu-decode\\]"):
        decode_quality.compare(tiny_model, image_paths * 2, candidate="gpu", device="cpu")
