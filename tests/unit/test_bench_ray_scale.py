"""bench/ray_scale.py's arithmetic and report, on given timings (the timings of a real run are
bench/results' business, not a test's)."""

from fexport.bench import ray_scale


def _data():
    rows = [{"run": "local engine, 1 thread", "first_s": 2.2, "best_s": 2.0},
            {"run": "ray, 1 node", "first_s": 9.0, "best_s": 8.0},
            {"run": "ray, 2 nodes", "first_s": 6.0, "best_s": 5.0}]
    return {"images": 400, "batch_size": 16, "iters": 3, "load_before": 0.1, "rows": rows,
            "machine": {"cpu": "AMD EPYC", "cores": 2, "cpu_flags": ["avx2"]}}


def test_rates_and_ratios_come_from_the_best_runs():
    data = ray_scale._with_ratios(_data())
    assert [r["images_per_s"] for r in data["rows"]] == [200.0, 50.0, 80.0]
    assert data["speedup_2_nodes_over_1"] == 1.6 and data["ray_1_node_over_local"] == 0.25


def test_the_report_names_the_machine_and_every_run():
    text = ray_scale.markdown(ray_scale._with_ratios(_data()))
    assert "AMD EPYC, 2 cores (avx2), load before 0.10" in text
    assert "| ray, 2 nodes | 6.0 | 5.0 | 80.0 |" in text and "2 nodes over 1: 1.6x" in text
