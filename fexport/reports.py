"""What verification and the quality judge measured, typed, with one name per meaning.

Measured values keep the plain names (`max_rel`, `min_cosine`); the limits they are judged
against say that they are limits (`max_rel_allowed`, `min_cosine_required`). `passed` is always
derived from what was measured, never stored apart from it, so it cannot disagree with the
numbers. Plain dataclasses and the standard library only: the runtime's contract holds these
reports, and the runtime stays lean. In files (the contract's JSON, `--report`, `--json`) they
are plain dicts: `to_dict()` writes them, `from_dict()` reads them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# How a verification check ended. Only OK and ROUNDING pass.
OK = "ok"  # within both tolerances
ROUNDING = "rounding"  # beyond them, but as far as Keras moves from itself under rounding noise
UNRESOLVABLE = "unresolvable"  # rounding explains it, but rounding that loud would hide a defect
DEFECT = "defect"  # far beyond the model's own rounding sensitivity
SHAPE_MISMATCH = "shape mismatch"
OUTCOMES = (OK, ROUNDING, UNRESOLVABLE, DEFECT, SHAPE_MISMATCH)
_CAUSES = {ROUNDING: "within float32 rounding as this model amplifies it",
           UNRESOLVABLE: "float32 rounding amplified beyond what verification can resolve",
           DEFECT: "far beyond rounding: a conversion defect"}


@dataclass(frozen=True)
class NoiseFloor:
    """How far Keras moves from itself when its input moves by `input_noise` (relative, about
    one float32 rounding step): the model's own rounding sensitivity."""

    input_noise: float
    max_rel: float
    min_cosine: float


@dataclass(frozen=True)
class CheckResult:
    """One verification input (a random batch, a batch of images): Keras against ONNX."""

    label: str
    keras_shape: tuple
    onnx_shape: tuple
    max_abs: float
    max_rel: float  # max |onnx - keras| / max |keras|
    min_cosine: float  # the lowest per-row cosine similarity
    outcome: str  # one of OUTCOMES
    noise_floor: NoiseFloor | None = None  # measured only for checks beyond the tolerances

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"check outcome {self.outcome!r}: expected one of {OUTCOMES}")

    @property
    def passed(self) -> bool:
        return self.outcome in (OK, ROUNDING)

    @property
    def rounding_explains(self) -> bool:
        return self.outcome in (ROUNDING, UNRESOLVABLE)

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        if self.outcome == SHAPE_MISMATCH:
            return (f"{mark} {self.label}: shape mismatch, keras {self.keras_shape} vs onnx "
                    f"{self.onnx_shape}")
        text = (f"{mark} {self.label}: shape {self.onnx_shape}  max abs {self.max_abs:.3g}  "
                f"max rel {self.max_rel:.3g}  min cosine {self.min_cosine:.7f}")
        floor = self.noise_floor
        if floor is None:
            return text
        return (f"{text}; Keras vs itself with {floor.input_noise:g} input noise: max rel "
                f"{floor.max_rel:.3g}, min cosine {floor.min_cosine:.7f} -> "
                f"{_CAUSES.get(self.outcome, self.outcome)}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["keras_shape"], data["onnx_shape"] = list(self.keras_shape), list(self.onnx_shape)
        return {**data, "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        floor = data.get("noise_floor")
        return cls(**{**_known(cls, data), "keras_shape": tuple(data["keras_shape"]),
                      "onnx_shape": tuple(data["onnx_shape"]),
                      "noise_floor": NoiseFloor(**floor) if floor else None})


@dataclass(frozen=True)
class VerificationReport:
    """Every check of an export against Keras, and the tolerances they were held to."""

    checks: tuple[CheckResult, ...]
    max_rel_allowed: float  # --rtol
    min_cosine_required: float  # --min-cosine

    def __post_init__(self):
        object.__setattr__(self, "checks", tuple(self.checks))

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.checks), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.checks), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((c.min_cosine for c in self.checks), default=1.0)

    @property
    def rounding_explains(self) -> bool:
        return any(c.rounding_explains for c in self.checks)

    @property
    def verifiable(self) -> bool:
        return all(c.outcome != UNRESOLVABLE for c in self.checks)

    @property
    def first_failure(self) -> CheckResult | None:
        return next((c for c in self.checks if not c.passed), None)

    def lines(self) -> list[str]:
        """One line per check, then `verification passed` when every check passed."""
        return [c.line() for c in self.checks] + (["verification passed"] if self.passed else [])

    def to_dict(self) -> dict:
        return {"passed": self.passed, "max_rel_allowed": self.max_rel_allowed,
                "min_cosine_required": self.min_cosine_required, "max_abs": self.max_abs,
                "max_rel": self.max_rel, "min_cosine": self.min_cosine,
                "checks": [c.to_dict() for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict) -> VerificationReport:
        return cls(tuple(CheckResult.from_dict(c) for c in data["checks"]),
                   data["max_rel_allowed"], data["min_cosine_required"])


@dataclass(frozen=True)
class QualityReport:
    """A reduced-precision variant's features against float32's, on images the calibration
    did not see."""

    images: int
    min_cosine: float  # the lowest per-image cosine similarity
    mean_cosine: float
    max_rel: float
    neighbour_overlap: float  # mean share of each image's nearest neighbours both agree on
    neighbours: int  # how many nearest neighbours `neighbour_overlap` compares
    min_cosine_required: float  # --min-cosine
    # Cross-validated logistic-regression accuracy on each feature set (class folders only).
    probe_accuracy_float32: float | None = None
    probe_accuracy_candidate: float | None = None
    precision: str = "fp32"  # the variant judged: "int8", "fp16", "bf16", "int8-bf16"
    method: str = ""  # how the variant was made, in words
    calibration_samples: int = 0
    measured_on: str = ""  # what ran the variant: "openvino cpu bf16"
    reference: str = ""  # what ran float32
    kept_float: tuple[str, ...] = field(default_factory=tuple)  # INT8 nodes left in float

    def __post_init__(self):
        object.__setattr__(self, "kept_float", tuple(self.kept_float))

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.min_cosine_required

    def lines(self) -> list[str]:
        lines = [f"{self.precision} ({self.method}, {self.calibration_samples} calibration "
                 f"images) vs float32 on {self.images} other images:",
                 f"  cosine min {self.min_cosine:.5f} mean {self.mean_cosine:.5f} (threshold "
                 f"{self.min_cosine_required:g}), max rel error {self.max_rel:.3g}",
                 f"  nearest-{self.neighbours} overlap {self.neighbour_overlap:.1%}"]
        if self.probe_accuracy_float32 is not None:
            lines.append(f"  logistic regression accuracy: float32 "
                         f"{self.probe_accuracy_float32:.1%}, {self.precision} "
                         f"{self.probe_accuracy_candidate:.1%}")
        return lines

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "kept_float": list(self.kept_float),
                "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict) -> QualityReport:
        return cls(**_known(cls, data))


def _known(cls, data: dict) -> dict:
    """`data` without the keys `to_dict` derives (such as `passed`): those are recomputed."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
