"""runtime/timing.py and runtime/benchmark.py: the timing core behind `fexport bench` and
`optimize`, on the tiny model and on plain Python runners."""

import time

import numpy as np
import pytest

from fexport.runtime import benchmark, timing
from fexport.runtime.backends import onnxruntime_backend as sessions
from fexport.runtime.contract import stored_contract

# Scale-relative bound against the numpy reference: float32 rounding in a 27-term convolution
# and a 256-pixel mean is ~1e-6; 1e-5 leaves room for summation order.
RTOL = 1e-5


def test_summarize_turns_latencies_into_percentiles_and_throughput():
    row = timing.summarize(8, 0.5, [0.001, 0.002, 0.003, 0.004, 0.010])
    assert row["batch"] == 8 and row["first_run_ms"] == 500.0
    assert row["mean_ms"] == pytest.approx(4.0)  # float sums of ms: exact to ~1e-15
    assert row["p50_ms"] == pytest.approx(3.0)
    assert row["p90_ms"] == pytest.approx(7.6)  # numpy's linear interpolation: 4 + 0.6 * 6
    assert row["images_per_s"] == pytest.approx(8 / 0.003)  # from the median call


def test_random_pixels_are_whole_values_of_the_inputs_shape(tiny_model):
    contract = stored_contract(tiny_model)
    pixels = timing.random_pixels(contract, 3)
    assert pixels.shape == (3, 16, 16, 3) and pixels.dtype == np.float32
    assert pixels.min() >= 0 and pixels.max() <= 255 and (pixels == np.round(pixels)).all()
    np.testing.assert_array_equal(timing.random_pixels(contract, 3), pixels)  # seeded by batch


def test_the_onnx_runner_computes_the_models_features(tiny_model, pixels, expected_features):
    runner = benchmark.onnx_runner(sessions.open_session(tiny_model, "cpu"),
                                   stored_contract(tiny_model))
    assert runner.name == "onnxruntime"
    out, want = runner.call(pixels)[0], expected_features(pixels)
    assert np.abs(out - want).max() <= RTOL * np.abs(want).max()


def test_one_runner_is_timed_once_a_round():
    calls = []
    rows = timing.bench_batch([timing.Runner("count", calls.append)], np.zeros((2, 1)),
                              warmup=2, iters=5, duration=None)
    assert len(calls) == 1 + 2 + 5  # first run, warm-up, timed
    (row,) = rows
    assert (row["runtime"], row["batch"], row["iterations"], row["calls_per_round"]) == \
        ("count", 2, 5, 1.0)


def test_runners_taking_turns_each_fill_a_turn():
    counts = {"a": 0, "b": 0}

    def runner(name):
        def call(_):
            counts[name] += 1
            time.sleep(0.002)
        return timing.Runner(name, call)

    rows = timing.bench_batch([runner("a"), runner("b")], np.zeros((1, 1)), 0, 2, None)
    assert [r["runtime"] for r in rows] == ["a", "b"] and rows[0]["iterations"] == 2
    # Calls of at least 2 ms fill a 0.1 s turn with at most 50 of them; a loaded machine
    # sleeps longer, so the lower bound is loose.
    assert all(5 <= r["calls_per_round"] <= 50 for r in rows), rows
    assert counts["a"] == 1 + rows[0]["calls_per_round"] * 2  # first run + two turns
    assert all(r["p50_ms"] >= 2.0 for r in rows)


def test_a_turn_of_fast_calls_lasts_about_turn_s(monkeypatch):
    monkeypatch.setattr(timing, "TURN_S", 0.005)
    start = time.perf_counter()
    times = timing._turn(timing.Runner("noop", lambda _: None), None, taking_turns=True)
    elapsed = time.perf_counter() - start
    assert sum(times) >= 0.005
    # 20x the turn: room for a loaded machine and for timing overhead of ~1 us a call.
    assert elapsed < 0.1, f"{len(times)} calls took {elapsed:.2f} s"


def test_bench_model_times_the_tiny_model_and_its_image_pipeline(tiny_model, image_paths):
    result = benchmark.bench_model(tiny_model, batch_sizes=(1, 2), threads=1, warmup=1,
                                   iters=2, image_paths=image_paths[:2])
    assert result["provider"] == "CPUExecutionProvider" and result["session_creation_s"] > 0
    runs = [(r["runtime"], r["batch"]) for r in result["results"]]
    assert runs == [("onnxruntime", 1), ("onnxruntime", 2), ("decode+resize", 1),
                    ("end-to-end", 1), ("decode+resize", 2), ("end-to-end", 2)]
    assert all(r["p50_ms"] > 0 and r["images_per_s"] > 0 for r in result["results"])
    assert result["machine"]["cores"] >= 1 and result["peak_rss_mib"] > 10


def test_a_duration_bounds_the_rounds_instead_of_a_count():
    start = time.perf_counter()
    assert sum(1 for _ in timing._rounds(1, 0.05)) > 1  # the count is ignored
    # at least the duration; the upper bound leaves 20x for a loaded 2-core machine
    assert 0.05 <= time.perf_counter() - start < 1.0
    assert len(list(timing._rounds(3, None))) == 3


def test_reference_runners_are_timed_beside_onnx_runtime(tiny_model):
    """The hook --compare-keras uses: runners made from the file's contract join the turns."""
    seen = []

    def reference(contract):
        seen.append(contract.feature_dim)
        return [timing.Runner("reference", lambda pixels: pixels.mean())]

    result = benchmark.bench_model(tiny_model, batch_sizes=(2,), threads=1, warmup=0, iters=1,
                                   reference_runners=reference)
    assert seen == [stored_contract(tiny_model).feature_dim]
    assert [r["runtime"] for r in result["results"]] == ["onnxruntime", "reference"]
