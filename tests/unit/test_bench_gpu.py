"""The GPU suite's pieces that need no GPU: packing onnxruntime-gpu for one architecture, the
report's table, bottleneck, TensorRT starts and GPU utilisation, and the sampler's refusal."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import time

import pytest

from fexport.bench import gpu, gpu_tensorrt
from fexport.bench.gpu_carry import FATBIN_MAGIC, keep_one_arch

ENTRY_HEADER = 64


def _entry(arch: int, payload: bytes) -> bytes:
    header = bytearray(ENTRY_HEADER)
    struct.pack_into("<HHIQ", header, 0, 2, 0x101, ENTRY_HEADER, len(payload))
    struct.pack_into("<I", header, 28, arch)
    return bytes(header) + payload


def _fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return FATBIN_MAGIC + struct.pack("<HHQ", 1, 16, len(body)) + body


def test_only_the_chosen_architecture_keeps_its_kernels():
    hopper, ampere = b"\x11" * 32, b"\x22" * 48
    decoy = FATBIN_MAGIC + b"\x07\x00" * 6  # the magic inside other bytes: not a fatbin
    library = b"code" + decoy + _fatbin(_entry(80, ampere), _entry(90, hopper)) + b"tail"
    pruned, kept = keep_one_arch(library, arch=90)
    assert kept == len(hopper)
    assert len(pruned) == len(library)  # every offset in the library stays valid
    assert hopper in pruned and ampere not in pruned
    assert pruned.startswith(b"code" + decoy) and pruned.endswith(b"tail")


def test_a_library_without_fatbins_is_left_as_it_is():
    assert keep_one_arch(b"no gpu code here") == (b"no gpu code here", 0)


def _entry_data(name, rates):
    results = [{"runtime": runtime, "batch": batch, "images_per_s": rate}
               for runtime, by_batch in rates.items() for batch, rate in by_batch.items()]
    return {"model": name, "float32_max_rel_to_cpu": 3e-7, "skipped": [],
            "quality": {"images": 32, "min_cosine": 0.99999, "max_rel": 6e-4,
                        "measured_on": "onnxruntime cuda fp16"},
            "results": results}


def test_the_slower_stage_is_named_from_the_rates():
    entry = _entry_data("VGG16", {"fexport onnxruntime cuda fp16": {32: 2000.0, 256: 5500.0}})
    assert gpu._rate(entry) == 5500.0  # the largest batch, as end to end runs it


def test_markdown_has_a_row_per_runtime_and_the_bottleneck():
    entry = _entry_data("ResNet50", {"fexport onnxruntime cuda fp16": {1: 900.0, 256: 7189.0},
                                     "torch eager cuda fp16": {1: 179.0, 256: 6638.0}})
    entry["end_to_end"] = {"files": 512, "batch": 256, "decode_threads": 16,
                           "end_to_end_images_per_s": 925.0, "decode_images_per_s": 1497.0,
                           "arrays_images_per_s": 7189.0, "bound_by": "decode"}
    data = {"machine": {"gpu": "NVIDIA H200, 580", "cuda": "13.0", "onnxruntime": "1.31.1",
                        "cpu": "Xeon", "cores": 16, "python": "3.12"},
            "batch_sizes": [1, 256], "decode_scaling": {1: 375.0, 16: 1313.0},
            "models": [entry]}
    text = gpu.markdown(data)
    assert "| fexport onnxruntime cuda fp16 | 900 | 7189 |" in text
    assert "| torch eager cuda fp16 | 179 | 6638 |" in text
    assert "the slower stage is decode" in text and "1: 375, 16: 1313" in text
    assert gpu.name_for(data["machine"]) == "gpu-h200-ort1.31.1"


def test_the_end_to_end_rate_is_cudas_fp16_not_tensorrts():
    entry = _entry_data("VGG16", {"fexport onnxruntime cuda fp16": {256: 5500.0},
                                  "fexport onnxruntime tensorrt fp16": {256: 9000.0}})
    assert gpu._rate(entry) == 5500.0  # the end-to-end run opens the file on CUDA


def test_tensorrt_starts_and_gpu_utilisation_are_reported():
    entry = _entry_data("VGG16", {"fexport onnxruntime tensorrt int8": {1: 800.0}})
    entry["end_to_end"] = {"files": 8, "batch": 8, "decode_threads": 2,
                           "end_to_end_images_per_s": 90.0, "decode_images_per_s": 100.0,
                           "arrays_images_per_s": 800.0, "bound_by": "decode",
                           "gpu_utilisation": {
                               "threads": {"samples": 40, "source": "nvidia-smi", "error": None,
                                           "mean_percent": 31.5, "max_percent": 77.0},
                               "processes": {"samples": 0, "source": "nvidia-smi",
                                             "error": "FileNotFoundError: nvidia-smi"}}}
    entry["tensorrt"] = {"int8": {"build_s": 95.25, "cached_start_s": 2.5,
                                  "min_cosine": 0.99712, "max_rel": 0.031}}
    data = {"machine": {"gpu": "NVIDIA H100", "cuda": "13.0", "onnxruntime": "1.31.1",
                        "cpu": "Xeon", "cores": 16, "python": "3.11"},
            "batch_sizes": [1], "decode_scaling": {1: 100.0}, "models": [entry]}
    text = gpu.markdown(data)
    assert "| fexport onnxruntime tensorrt int8 | 800 |" in text
    assert "TensorRT int8: engine built in 95.2 s, cached start 2.5 s; against float32 on 8 " \
           "real photos min cosine 0.99712, max rel 3.10e-02." in text
    assert "GPU utilisation meanwhile (threads): mean 32%, max 77% (40 samples, " \
           "nvidia-smi)." in text
    assert "(processes): not sampled (FileNotFoundError: nvidia-smi)." in text


def test_the_gpu_sampler_says_why_it_has_no_samples_on_a_host_without_a_gpu():
    if shutil.which("nvidia-smi") or importlib.util.find_spec("pynvml"):
        pytest.skip("this host can be sampled")
    with gpu_tensorrt.GpuSampler() as sampler:
        time.sleep(3 * gpu_tensorrt.SAMPLE_S)
    summary = sampler.summary()
    assert summary["samples"] == 0 and summary["source"] == "nvidia-smi"
    assert summary["error"].startswith("FileNotFoundError")
    assert not sampler._thread.is_alive()  # ended, not left querying


def test_gpu_decoding_rows_report_the_fallbacks_or_why_not_timed():
    found = {"images_per_s": 4100.0, "gpu": 500, "cpu_fallback": 12,
             "reasons": {"a progressive JPEG": 12}}
    assert gpu._gpu_decode_lines(found) == [
        "With --decode gpu (nvImageCodec, batches kept on the GPU): 4100 images/s; 500 files "
        "decoded on the GPU, 12 on the CPU (12 a progressive JPEG)."]
    assert gpu._gpu_decode_lines({"skipped": "MissingDependencyError: no"}) == [
        "With --decode gpu: not timed (MissingDependencyError: no)."]
    assert gpu._gpu_decode_lines(None) == []


def test_the_timed_runs_tally_leaves_the_warm_up_out():
    before = {"gpu": 250, "cpu_fallback": 6, "reasons": {"a progressive JPEG": 6}}
    after = {"gpu": 750, "cpu_fallback": 19,
             "reasons": {"a progressive JPEG": 18, "not a JPEG (PNG)": 1}}
    assert gpu._since(before, after) == {
        "gpu": 500, "cpu_fallback": 13,
        "reasons": {"a progressive JPEG": 12, "not a JPEG (PNG)": 1}}
    assert gpu._since(None, None) is None
