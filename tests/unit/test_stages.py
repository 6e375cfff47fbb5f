"""runtime/stages.py: a run's time by stage, gathered by the local engine for every run."""

import time

from fexport.runtime import extract_to_file
from fexport.runtime.stages import DecodeTimes, Laps, StageTimes, timing


def test_timing_adds_to_its_stage_and_nothing_without_stages():
    stages = StageTimes()
    for _ in range(2):
        with timing(stages, "engine"):
            time.sleep(0.01)
    assert 0.02 <= stages.engine < 1.0 and stages.decode_wait == 0.0
    with timing(None, "engine"):  # no stages: the body still runs
        pass


def test_lines_give_rates_shares_and_the_rest():
    stages = StageTimes(images=100, decode_wait=1.0, engine=0.5, write=0.25, total=2.0)
    assert stages.other == 0.25
    first, second, decoders = stages.lines()
    assert first == ("end to end 50.0 images/s; the engine alone 200.0 images/s on the same "
                     "batches (0.25x of it)")
    assert "waiting for decoding 1.00 s (50%)" in second and "other 0.25 s (12%)" in second
    assert StageTimes().lines()[0].startswith("end to end 0.0 images/s")  # an empty run
    assert decoders == ("  decoders, summed: opening 0.00 s, decoding 0.00 s, resizing 0.00 s, "
                        "into the batch 0.00 s")


def test_laps_add_each_stage_and_decode_times_add_up():
    laps = Laps()
    time.sleep(0.01)
    laps.lap("decode")
    laps.lap("resize")
    assert 0.01 <= laps.times.decode < 1.0 and laps.times.resize < laps.times.decode
    total = DecodeTimes(open=1.0)
    total.add(laps.times)
    total.add(laps.times)
    assert total.open == 1.0 and total.decode == 2 * laps.times.decode


def test_every_local_run_carries_its_stages(tiny_model, image_paths, tmp_path):
    summary = extract_to_file(tiny_model, image_paths, tmp_path / "f.npy", batch_size=2)
    stages = summary.stages
    assert stages.images == summary.extracted == len(image_paths)
    assert stages.engine > 0 and stages.write > 0
    assert stages.decode_wait + stages.engine + stages.write <= stages.total
    # The files were opened, decoded, resized and written into the batches, each timed.
    assert all(getattr(stages.decoders, stage) > 0 for stage in ("open", "decode", "write"))
    assert stages.to_dict()["decoders"]["decode"] == stages.decoders.decode
