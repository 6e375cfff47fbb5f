"""What fast decoding costs in features: `decode_quality="fast"` against "exact" on one's images.

The same model extracts the same images twice, once decoded exactly as Keras decodes them and
once with JPEGs decoded at reduced size (fexport.runtime.files.images, DECODE_QUALITIES), and the
features are compared row by row, as reduced precision is (fexport.precision.quality). The time
of each pass is taken too, in the same run: on small JPEGs fast gains little, on large photos
up to about 1.8x of the decode (libjpeg still reads every Huffman code).

`candidate="gpu"` compares decoding on the GPU (`decode="gpu"`, nvImageCodec: another JPEG
decoder, so not Keras-exact either) against exact decoding instead, where it runs, with the
count of files that fell back to the CPU.
"""

from __future__ import annotations

import dataclasses
import time

from fexport import comparison
from fexport.errors import UsageError
from fexport.runtime import FeatureExtractor
from fexport.runtime.files.inputs import expand


@dataclasses.dataclass(frozen=True)
class DecodeComparison:
    """Features from fast decoding against exact decoding, on the same images and model."""

    images: int
    min_cosine: float
    mean_cosine: float
    neighbour_overlap: float  # mean share of each image's nearest neighbours both agree on
    neighbours: int
    exact_s: float  # seconds to extract every image with exact decoding (decode and engine)
    fast_s: float
    min_cosine_required: float
    candidate: str = "fast"  # "fast": decode_quality="fast"; "gpu": decode="gpu"
    decoded: dict | None = None  # for "gpu": images on the GPU and CPU fallbacks, and why

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.min_cosine_required

    @property
    def speedup(self) -> float:
        return self.exact_s / max(self.fast_s, 1e-9)

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        return [f"{self.candidate} vs exact decoding on {self.images} images: cosine min "
                f"{self.min_cosine:.5f} mean {self.mean_cosine:.5f} (threshold "
                f"{self.min_cosine_required:g}: {verdict})",
                f"  nearest-{self.neighbours} overlap {self.neighbour_overlap:.1%}",
                f"  extraction {self.exact_s:.2f} s exact, {self.fast_s:.2f} s "
                f"{self.candidate} ({self.speedup:.2f}x; decode and engine, this run)"] \
            + ([f"  decoded on the GPU {self.decoded['gpu']}, on the CPU "
                f"{self.decoded['cpu_fallback']}"] if self.decoded else [])

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed, "speedup": self.speedup}


CANDIDATES = {"fast": {"decode_quality": "fast"}, "gpu": {"decode": "gpu"}}


def compare(model_path, inputs, *, batch_size=32,
            min_cosine=comparison.FAST_DECODE_MIN_COSINE, candidate="fast",
            **options) -> DecodeComparison:
    """Extract `inputs` with `model_path` decoded exactly and as `candidate` says ("fast" or
    "gpu"; other FeatureExtractor `options` the same) and compare the features."""
    if candidate not in CANDIDATES:
        raise UsageError(f"decoding {candidate!r} to compare: expected one of "
                         f"{', '.join(CANDIDATES)}")
    items = list(expand(inputs))
    if len(items) < comparison.MIN_EVALUATION_IMAGES:
        raise UsageError(f"{len(items)} images: comparing decodings needs at least "
                         f"{comparison.MIN_EVALUATION_IMAGES} (each image's "
                         f"{comparison.NEIGHBOURS} nearest neighbours are compared); pass more")
    exact, exact_s, _ = _extract(model_path, items, batch_size, {}, options)
    fast, fast_s, decoded = _extract(model_path, items, batch_size, CANDIDATES[candidate],
                                     options)
    cosines = comparison.row_cosines(exact, fast)
    return DecodeComparison(
        images=len(items), min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean()),
        neighbour_overlap=comparison.neighbour_overlap(exact, fast),
        neighbours=comparison.NEIGHBOURS,
        exact_s=exact_s, fast_s=fast_s, min_cosine_required=min_cosine, candidate=candidate,
        decoded=decoded)


def _extract(model_path, items, batch_size, decoding, options):
    """Features, the seconds they took, after one warm-up image (the engine's first run), and
    for GPU decoding how the images were decoded."""
    extractor = FeatureExtractor(model_path, **decoding, **options)
    try:
        extractor.extract(items[:1])
        started = time.perf_counter()
        features = extractor.extract(items, batch_size)
        return features, time.perf_counter() - started, extractor.decoded
    finally:
        extractor.close()
