"""What fast decoding costs in features: `decode_quality="fast"` against "exact" on one's images.

The same model extracts the same images twice, once decoded exactly as Keras decodes them and
once with JPEGs decoded at reduced size (fexport.runtime.files.images, DECODE_QUALITIES), and the
features are compared row by row, as reduced precision is (fexport.precision.quality). The time
of each pass is taken too, in the same run: on small JPEGs fast gains little, on large photos
up to about 1.8x of the decode (libjpeg still reads every Huffman code).
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

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.min_cosine_required

    @property
    def speedup(self) -> float:
        return self.exact_s / max(self.fast_s, 1e-9)

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        return [f"fast vs exact decoding on {self.images} images: cosine min "
                f"{self.min_cosine:.5f} mean {self.mean_cosine:.5f} (threshold "
                f"{self.min_cosine_required:g}: {verdict})",
                f"  nearest-{self.neighbours} overlap {self.neighbour_overlap:.1%}",
                f"  extraction {self.exact_s:.2f} s exact, {self.fast_s:.2f} s fast "
                f"({self.speedup:.2f}x; decode and engine, this run)"]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed, "speedup": self.speedup}


def compare(model_path, inputs, *, batch_size=32,
            min_cosine=comparison.FAST_DECODE_MIN_COSINE, **options) -> DecodeComparison:
    """Extract `inputs` with `model_path` decoded both ways (other FeatureExtractor `options`
    the same) and compare the features."""
    items = list(expand(inputs))
    if len(items) < comparison.MIN_EVALUATION_IMAGES:
        raise UsageError(f"{len(items)} images: comparing decodings needs at least "
                         f"{comparison.MIN_EVALUATION_IMAGES} (each image's "
                         f"{comparison.NEIGHBOURS} nearest neighbours are compared); pass more")
    exact, exact_s = _extract(model_path, items, batch_size, "exact", options)
    fast, fast_s = _extract(model_path, items, batch_size, "fast", options)
    cosines = comparison.row_cosines(exact, fast)
    return DecodeComparison(
        images=len(items), min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean()),
        neighbour_overlap=comparison.neighbour_overlap(exact, fast),
        neighbours=comparison.NEIGHBOURS,
        exact_s=exact_s, fast_s=fast_s, min_cosine_required=min_cosine)


def _extract(model_path, items, batch_size, decode_quality, options):
    """Features and the seconds they took, after one warm-up image (the engine's first run)."""
    extractor = FeatureExtractor(model_path, decode_quality=decode_quality, **options)
    try:
        extractor.extract(items[:1])
        started = time.perf_counter()
        features = extractor.extract(items, batch_size)
        return features, time.perf_counter() - started
    finally:
        extractor.close()
