"""precision/optimize.py's timer (every candidate timed in turns with the float32 baseline,
one pair of engines open at a time, on the tiny model), and the devices its candidates run on
(TensorRT only where its provider loads)."""

import gc
import weakref

import pytest

from fexport.precision import optimize
from fexport.runtime import extractor


def test_each_candidate_is_timed_against_the_baseline_with_one_pair_open(tiny_model,
                                                                         monkeypatch):
    contract = extractor.FeatureExtractor(tiny_model, "cpu").contract
    candidates = [optimize.Candidate(name, "onnxruntime", "fp32", str(tiny_model))
                  for name in ("fp32", "a", "b", "c")]
    opened = []
    real = optimize._extractor

    def tracked(candidate):  # the real extractor; only watched, to count those alive at once
        made = real(candidate)
        gc.collect()
        alive = sum(ref() is not None for ref in opened)
        opened.append(weakref.ref(made))
        assert alive <= 1, f"{alive} engines open beside the one being opened"
        return made

    monkeypatch.setattr(optimize, "_extractor", tracked)
    optimize._Timer(contract, batch_size=2, iters=2)(candidates)
    assert len(opened) == 4 and all(c.images_per_s > 0 for c in candidates)


def test_tensorrt_candidates_only_where_the_provider_loads_else_a_note_why_not():
    from fexport.runtime import backends

    reason = backends.tensorrt_unavailable()
    if reason is None:
        pytest.skip("TensorRT loads here: its candidates are built, which takes a GPU's minutes")
    notes = []
    # Nothing is built or judged without TensorRT: the reference and options are not touched.
    assert optimize._tensorrt(None, None, None, [], notes) == []
    assert notes == [f"no TensorRT candidate: {reason}"]
    assert "no TensorRT provider" in reason and 'pip install "fexport[tensorrt]"' in reason


def test_a_candidate_is_timed_on_its_own_device(tiny_model):
    candidate = optimize.Candidate("fp32", "onnxruntime", "fp32", str(tiny_model))
    assert candidate.device == "cpu"
    assert str(optimize._extractor(candidate).ran) == "onnxruntime cpu fp32"
