"""What every extraction engine is asked and what it answers, in the same words: the run's
settings (`Run`, checked when it is made) and the `Summary` of what the run did."""

from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass, field
from typing import Callable

from fexport.errors import UsageError

from ..extractor import FeatureExtractor
from ..on_error import check_on_error
from ..stages import StageTimes

MODES = {"new": "refuse an existing output", "resume": "continue an interrupted run",
         "overwrite": "replace an existing output"}
# The keyword arguments FeatureExtractor opens a model file with (all but the path).
EXTRACTOR_OPTIONS = tuple(inspect.signature(FeatureExtractor).parameters)[1:]


@dataclass(frozen=True)
class Run:
    """The settings every engine takes, with the same names and meanings."""

    batch_size: int = 32
    on_error: str = "skip"  # on_error.ON_ERROR
    mode: str = "new"  # MODES
    on_progress: Callable[[int], None] | None = None  # called with each step's input count
    on_listed: Callable[[int], None] | None = None  # called once, with how many inputs there are

    def __post_init__(self):
        if not isinstance(self.batch_size, numbers.Integral) or isinstance(self.batch_size, bool) \
                or self.batch_size < 1:
            raise UsageError(f"batch_size must be a whole number of at least 1, not "
                             f"{self.batch_size!r}")
        check_on_error(self.on_error)
        if self.mode not in MODES:
            words = "; ".join(f"{mode!r}: {meaning}" for mode, meaning in MODES.items())
            raise UsageError(f"mode must be one of {', '.join(MODES)} ({words}), not "
                             f"{self.mode!r}")

    def progress(self, count: int) -> None:
        if self.on_progress is not None:
            self.on_progress(count)

    def listed(self, count: int) -> None:
        if self.on_listed is not None:
            self.on_listed(count)


@dataclass
class Summary:
    """What a run did, whichever engine ran it."""

    total: int  # inputs, one per image once folders are listed
    extracted: int  # inputs with a row in the output
    failures: list = field(default_factory=list)  # (key, reason), in input order
    written: list = field(default_factory=list)  # the files (or shard folder) written, output first
    resumed: int = 0  # inputs an interrupted run had already done (mode="resume")
    row_shape: tuple = ()  # the shape of one input's features
    engine: str = "local"
    ran: str = ""  # what ran, in words: backend, device and precision, or the Ray workers
    # engine="ray" only: worker "host:pid/device" -> {"loads": models its process opened,
    # "rows": inputs it did, "node": its Ray node, "restarted": Ray started it again after
    # the actor's process died}; None for the local engine.
    ray_workers: dict | None = None
    ray_nodes: int = 0  # engine="ray": the nodes its workers ran on
    # engine="ray": worker processes Ray restarted after one died (each gave its batches again)
    retries: int = 0
    stages: StageTimes | None = None  # the local engine: where the time went
    seconds: float = 0.0  # the run's wall-clock time, listing and writing included


def check_options(options, engine, own=()) -> None:
    """Refuse keyword arguments that are neither FeatureExtractor's nor the engine's own."""
    unknown = sorted(set(options) - set(EXTRACTOR_OPTIONS) - set(own))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for engine={engine!r}; "
                         f"expected some of {', '.join((*own, *EXTRACTOR_OPTIONS))}")


def open_model(extractor_or_path, extractor_options) -> FeatureExtractor:
    """The FeatureExtractor given, or one opened on the model file with `extractor_options`."""
    if not isinstance(extractor_or_path, FeatureExtractor):
        return FeatureExtractor(extractor_or_path, **extractor_options)
    if extractor_options:
        raise UsageError(f"{', '.join(sorted(extractor_options))}: options for opening a model "
                         "file, but the FeatureExtractor given is open already; pass them to "
                         "FeatureExtractor(...), or pass the model's path instead")
    return extractor_or_path
