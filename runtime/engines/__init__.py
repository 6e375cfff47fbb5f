"""Extraction engines: many inputs into one output file, behind one interface.

    extract_to_file(extractor, ["photos/"], "features.npz")                 # engine="local"
    extract_to_file("model.onnx", ["s3://bucket/images/"], "s3://bucket/features.parquet",
                    engine="ray", num_workers=16)

`local` (local.py) runs a crash-safe, resumable job in this process; `ray` (ray_engine.py,
imported on first use) spreads the work over a Ray cluster. Both take the same settings, with
the same names and meanings (base.Run), and answer the same base.Summary.
"""

from __future__ import annotations

from fexport.errors import UsageError

from . import local
from .base import MODES, Run, Summary

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "MODES", "Run", "Summary", "checked_run", "extract_to_file"]


def extract_to_file(extractor_or_path, inputs, output, *, batch_size=32, on_error="skip",
                    mode="new", on_progress=None, on_listed=None, engine="local",
                    **engine_options) -> Summary:
    """Features of `inputs` into `output`, row i for the i-th input that loaded; a Summary.

    `extractor_or_path`: a FeatureExtractor, or a model file (a URI too, with engine="ray")
    opened with FeatureExtractor's keyword arguments among `engine_options` (device, threads,
    backend, precision, input_size, resample, keep_aspect, exif, workers, decode,
    decode_quality).
    `inputs`: image paths, folders, bytes, PIL images, numpy arrays (files/inputs.py); with
    engine="ray", paths, folders and URIs of files or folders.
    `output`: .npy, .npz, .csv or .parquet; with engine="ray", a NAME.parquet folder of shards.
    `on_error`: "skip" records each bad input (in the output or OUTPUT_STEM.failures.tsv) and
    goes on; "fail" raises ImageError at the first one.
    `mode`: "new" refuses an existing output; "overwrite" replaces it; "resume" continues an
    interrupted local run with the same model, inputs and settings (the local engine only).
    `on_progress(count)`: called as inputs are done, with how many.
    `on_listed(count)`: called once, with the number of inputs, when they have been listed
    (engine="ray" lists them as it goes, into a file: nothing holds them all).
    `engine`: "local" (this process) or "ray" (a Ray cluster; `engine_options` address,
    num_workers, num_gpus_per_worker, rows_per_shard: see ray_engine.extract_to_file).
    """
    settings = dict(batch_size=batch_size, on_error=on_error, mode=mode,
                    on_progress=on_progress, on_listed=on_listed)
    run = checked_run(output, engine=engine, **settings, **engine_options)
    return _engine(engine).extract_to_file(extractor_or_path, inputs, output, run,
                                           **engine_options)


def checked_run(output, *, engine="local", batch_size=32, on_error="skip", mode="new",
                on_progress=None, on_listed=None, **engine_options) -> Run:
    """The run's settings once every check that needs nothing opened has passed: a caller
    may check before listing a large input or loading a model."""
    run = Run(batch_size, on_error, mode, on_progress, on_listed)
    _engine(engine).check(output, run, engine_options)
    return run


def _engine(engine):
    if engine == "local":
        return local
    if engine == "ray":
        from . import ray_engine  # Ray itself is imported only when a run starts

        return ray_engine
    raise UsageError(f"engine must be 'local' (this process) or 'ray' (a Ray cluster, the ray "
                     f"extra), not {engine!r}")
