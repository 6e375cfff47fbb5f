"""precision/optimize.py's timer: every candidate timed in turns with the float32 baseline,
one pair of engines open at a time, on the tiny model."""

import gc
import weakref

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
