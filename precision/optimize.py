"""`fexport optimize`: the fastest variant that keeps the features, chosen by measurement.

Candidates are what this host can run: float32 on each backend, bf16 where the CPU has it in
hardware, INT8 by each of ONNX Runtime's calibration methods and by NNCF (with and without
accuracy control), and, when no INT8 passes, INT8 with the nodes kept in float that a measured
search found to help; where ONNX Runtime's TensorRT provider loads, the FP16 variant and the
percentile INT8 file on TensorRT. Each is judged against float32 on images the calibration did
not see (quantize.judge, the path `quantize` and `convert` use), where it runs, and timed on
this host at one batch size, all candidates interleaved. The fastest one that passes, if it
beats float32, is written with the whole table in its contract, and its contract names the
backend it won on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fexport import comparison
from fexport.errors import DeviceError, UsageError
from fexport.extras import installed, require
from fexport.reports import QualityReport
from fexport.runtime import backends, host
from fexport.runtime.contract import write_onnx
from fexport.runtime.extractor import FeatureExtractor

from . import nncf_int8, quality, quantize, sensitivity

METHODS = ("percentile", "minmax", "entropy")  # ONNX Runtime's, always there with fexport[cpu]


@dataclass
class Candidate:
    name: str  # "int8 percentile", "int8 minmax, 4 nodes in float", "fp32"
    backend: str
    precision: str
    file: str  # the ONNX file (the float32 original for fp32 candidates)
    report: QualityReport | None = None  # against float32; None for the reference itself
    images_per_s: float = 0.0
    verdict: str = ""  # "pass", or why not
    device: str = "cpu"  # "tensorrt" for the TensorRT candidates

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def row(self, baseline) -> dict:
        """The candidate's line of the table; the reference agrees with itself exactly."""
        report = self.report or _SELF_AGREEMENT
        return {"candidate": self.name, "backend": self.backend, "precision": self.precision,
                "images_per_s": self.images_per_s,
                "speedup": self.images_per_s / baseline if baseline else None,
                "min_cosine": report.min_cosine, "mean_cosine": report.mean_cosine,
                "nearest_5": report.neighbour_overlap, "method": report.method,
                "kept_float": list(report.kept_float), "verdict": self.verdict}


# The float32 reference's row: it agrees with itself exactly.
_SELF_AGREEMENT = QualityReport(images=0, min_cosine=1.0, mean_cosine=1.0, max_rel=0.0,
                                neighbour_overlap=1.0, neighbours=comparison.NEIGHBOURS,
                                min_cosine_required=0.0)


@dataclass
class OptimizeResult:
    rows: list[dict]
    chosen: dict | None  # the row written, or None when nothing beat float32 within the gate
    written: str | None
    batch_size: int
    min_cosine_required: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        header = (f"{'candidate':<34} {'backend':<12} {'precision':<9} {'images/s':>9} "
                  f"{'speedup':>7} {'min cos':>8} {'vs plain':>8} {'mean cos':>8} "
                  f"{'near-5':>6}  verdict")
        lines = [header]
        for r in self.rows:
            gain = "" if r.get("gain") is None else f"{r['gain']:+.4f}"
            lines.append(f"{r['candidate']:<34} {r['backend']:<12} {r['precision']:<9} "
                         f"{r['images_per_s']:>9.1f} {r['speedup']:>6.2f}x "
                         f"{r['min_cosine']:>8.4f} {gain:>8} {r['mean_cosine']:>8.4f} "
                         f"{r['nearest_5']:>6.0%}  {r['verdict']}")
        kept = [f"{r['candidate']}: {', '.join(r['kept_float'])}" for r in self.rows
                if r["kept_float"] and r["backend"] == "onnxruntime"]
        return lines + [f"kept in float, {entry}" for entry in kept] + self.notes


def optimize(model, sets, output, workdir, min_cosine=comparison.VARIANT_MIN_COSINE,
             batch_size=8, iters=10, methods=None) -> OptimizeResult:
    """Build, judge and time the candidates for `model` in the folder `workdir`; write the
    winner to `output`. `methods` limits the INT8 methods tried (None: every one installed)."""
    _check_methods(methods)
    reference = quantize.float32_reference(model)
    base = quantize.QuantizeOptions(model, str(output), "int8", sets.calibration,
                                    len(sets.calibration), "percentile", sets.evaluation,
                                    quantize.labels_for(sets.evaluation), min_cosine)
    notes = _calibration_notes(sets)
    if not backends.cuda_available():
        notes.append("no FP16 candidate: FP16 is for CUDA, and this host has no CUDA device")
    candidates = _float32(model, reference, base) + _bf16(reference, base, workdir, notes)
    timer = _Timer(reference.contract, batch_size, iters)
    candidates += _int8(reference, base, workdir, notes, methods)
    candidates += _tensorrt(reference, base, workdir, candidates, notes)
    timer(candidates)  # all together, for the table
    return _finish(candidates, reference, output, batch_size, min_cosine, notes)


def _calibration_notes(sets) -> list[str]:
    counted = (f"INT8 calibrated on {len(sets.calibration)} images and judged on "
               f"{len(sets.evaluation)} others")
    return [counted] + ([f"warning: {warning}"] if (warning := sets.warning()) else [])


def _float32(model, reference, base) -> list[Candidate]:
    found = [Candidate("fp32", "onnxruntime", "fp32", str(model), verdict="pass")]
    if installed("openvino"):
        report = quality.evaluate(reference, FeatureExtractor(model, "cpu", backend="openvino"),
                                  base.evaluation_images, base.labels, base.min_cosine)
        found.append(_judged("fp32", "openvino", "fp32", model, report))
    return found


def _bf16_missing() -> list[str]:
    """Why this host cannot run bf16 candidates (empty when it can)."""
    return [reason for reason, absent in (("OpenVINO is not installed", not installed("openvino")),
                                          ("no bf16 in hardware", not host.native_bf16()))
            if absent]


def _bf16(reference, base, workdir, notes) -> list[Candidate]:
    missing = _bf16_missing()
    if missing:
        notes.append(f"no bf16 candidate: {'; '.join(missing)} ({host.describe()})")
        return []
    options = dataclasses.replace(base, precision="bf16")
    file = quantize.build(options, reference, workdir)
    return [_judged("bf16", "openvino", "bf16", file, quantize.judge(file, reference, options))]


def _check_methods(methods) -> None:
    known = METHODS + nncf_int8.METHODS
    unknown = [m for m in methods or () if m not in known]
    if unknown or methods == ():
        raise UsageError(f"INT8 methods {', '.join(unknown) or '(none)'}: expected some of "
                         f"{', '.join(known)}")


def _int8(reference, base, workdir, notes, methods=None) -> list[Candidate]:
    """INT8 by each method, on each backend; then, if none but accuracy control passes, the
    sensitive-node search from ONNX Runtime's method that came closest."""
    found, files = [], {}
    chosen = [m for m in METHODS + _nncf_methods(notes) if methods is None or m in methods]
    if methods is not None:
        notes.append(f"INT8 methods tried: {', '.join(chosen)} (--methods)")
    for method in chosen:
        options = dataclasses.replace(base, method=method)
        if method == "nncf-accuracy":
            found += _tuned_per_backend(options, reference, workdir, notes)
            continue
        files[method] = quantize.build(options, reference, workdir)
        found += _on_backends(f"int8 {method}", files[method], reference, options, notes)
    plain = [c for c in found if "nncf-accuracy" not in c.name]  # all INT8 but the fallback
    onnxruntime_made = [c for c in plain if "nncf" not in c.name]
    if onnxruntime_made and not any(c.passed for c in plain):
        # fexport's search beside NNCF's accuracy control, from ONNX Runtime's closest method:
        # the ranking reads that method's QDQ tensor names, and the nodes it names must be
        # ones the searched method quantizes. (Searching NNCF's file with them kept nothing:
        # NNCF leaves Softmax in float already, and on DINOv2-S every try gained +0.0000.)
        method = _closest(onnxruntime_made)
        found += _keep_float(reference, dataclasses.replace(base, method=method),
                             (files[method], workdir), notes)
    return found


def _tensorrt(reference, base, workdir, found, notes) -> list[Candidate]:
    """The FP16 variant and ONNX Runtime's percentile INT8 file on TensorRT, each judged on
    the TensorRT engine that runs it, where the provider loads; else a note saying why not.
    Two engines only: each takes TensorRT minutes to build."""
    if reason := backends.tensorrt_unavailable():
        notes.append(f"no TensorRT candidate: {reason}")
        return []
    fp16 = dataclasses.replace(base, precision="fp16")
    files = [("tensorrt fp16", quantize.build(fp16, reference, workdir), fp16)]
    int8 = next((c for c in found if c.name == "int8 percentile"
                 and c.backend == "onnxruntime"), None)
    if int8 is not None:
        files.append(("tensorrt int8 percentile", int8.file,
                      dataclasses.replace(base, method="percentile")))
    return [c for name, file, options in files
            if (c := _judged_on_tensorrt(name, file, reference, options, notes))]


def _judged_on_tensorrt(name, file, reference, options, notes) -> Candidate | None:
    try:
        report = quantize.judge(file, reference, options, "onnxruntime", device="tensorrt")
    except DeviceError as exc:  # the provider listed, but this file's engine did not build
        notes.append(f"no \"{name}\" candidate: {exc}")
        return None
    candidate = _judged(name, "onnxruntime", options.precision, file, report)
    candidate.device = "tensorrt"
    return candidate


def _closest(candidates) -> str:
    """The method of the candidate with the highest min cosine."""
    best = max(candidates, key=lambda c: c.report.min_cosine)
    return best.name.removeprefix("int8 ").split(",")[0]  # "int8 minmax, float parts bf16"


def _nncf_methods(notes) -> tuple[str, ...]:
    if installed("nncf"):
        return nncf_int8.METHODS
    notes.append('no NNCF candidates: NNCF is not installed (pip install "fexport[openvino]")')
    return ()


def _cpu_backends() -> list[str]:
    return ["onnxruntime"] + (["openvino"] if installed("openvino") else [])


def _tuned_per_backend(options, reference, workdir, notes) -> list[Candidate]:
    """NNCF's accuracy control once per backend, each measuring on the kernels that will run
    its file (nncf_int8.tuned_on), each judged there."""
    found = []
    for backend in _cpu_backends():
        tuned = dataclasses.replace(options, tuned_on=backend)
        file = quantize.build(tuned, reference, workdir)
        if candidate := _judged_on("int8 nncf-accuracy", backend, file, reference, tuned,
                                   notes):
            found.append(candidate)
    return found


def _on_backends(name, file, reference, options, notes) -> list[Candidate]:
    """An INT8 file on each backend and, where bf16 runs, on OpenVINO with its float parts in
    bf16 (a copy whose contract says so)."""
    found = [c for backend in _cpu_backends()
             if (c := _judged_on(name, backend, file, reference, options, notes))]
    return found + ([] if _bf16_missing() else _int8_bf16(name, file, reference, options, notes))


def _judged_on(name, backend, file, reference, options, notes) -> Candidate | None:
    try:
        report = quantize.judge(file, reference, options, backend)
    except DeviceError as exc:  # OpenVINO: nothing left in INT8 (all kept in float)
        notes.append(f"no \"{name}\" candidate on {backend}: {exc}")
        return None
    return _judged(name, backend, "int8", file, report)


def _int8_bf16(name, file, reference, options, notes) -> list[Candidate]:
    bf16 = dataclasses.replace(options, precision="int8-bf16")
    marked = quantize.marked_copy(file, reference.contract, bf16.precision)
    try:
        report = quantize.judge(marked, reference, bf16)
    except DeviceError as exc:  # nothing left in float for bf16 to run
        notes.append(f"no \"{name}, float parts bf16\" candidate: {exc}")
        return []
    return [_judged(f"{name}, float parts bf16", "openvino", bf16.precision, marked, report)]


def _keep_float(reference, options, files, notes) -> list[Candidate]:
    """Nodes ranked by their local loss (signal-to-noise on the calibration images), then
    kept in float one by one where the features gain (sensitivity.search); the nodes kept
    make one candidate, judged on the held-out images like the others."""
    qdq_file, workdir = files  # the file to rank nodes by: ONNX Runtime's INT8
    ranking = sensitivity.rank_nodes(Path(workdir) / "prepared.onnx", qdq_file,
                                     quantize.calibration_reader(options, reference), workdir)
    notes.append("sensitive nodes, worst first (signal-to-quantization-noise, dB): " +
                 ", ".join(f"{name} {db:.1f}" for name, db in ranking[:8]))
    result = sensitivity.search([name for name, _ in ranking],
                                _calibration_cosine(reference, options, workdir),
                                comparison.calibration_target(options.min_cosine))
    notes.extend(result.lines())
    if not result.kept:
        return []
    kept = dataclasses.replace(options, nodes_to_exclude=result.kept)
    return _on_backends(f"int8 {options.method}, {len(result.kept)} nodes in float",
                        quantize.build(kept, reference, workdir), reference, kept, notes)


def _calibration_cosine(reference, options, workdir):
    """The search's measure: min cosine to float32 on the calibration images of the INT8
    file with `nodes` in float, on ONNX Runtime (the held-out images stay for the judge)."""
    paths = options.calibration_images[:options.samples]
    expected = reference.extract(paths)

    def measure(nodes) -> float:
        kept = dataclasses.replace(options, nodes_to_exclude=list(nodes))
        candidate = FeatureExtractor(quantize.build(kept, reference, workdir), "cpu",
                                     backend="onnxruntime")
        return float(comparison.row_cosines(expected, candidate.extract(paths)).min())
    return measure


def _judged(name, backend, precision, file, report: QualityReport) -> Candidate:
    verdict = "pass" if report.passed else \
        f"min cosine {report.min_cosine:.4f} < {report.min_cosine_required:g}"
    return Candidate(name, backend, precision, str(file), report=report, verdict=verdict)


@dataclass
class _Timer:
    """Sets the images/s of candidates at `batch_size`. Each candidate takes turns with the
    baseline (candidates[0], float32 on ONNX Runtime) in one process, one pair open at a time:
    at most two engines in memory however many candidates, and each speed is a ratio to the
    baseline measured in the same minutes, so drift (turbo, other load) cancels."""

    contract: object
    batch_size: int
    iters: int

    def __call__(self, candidates) -> None:
        from fexport.runtime import timing

        pixels = timing.random_pixels(self.contract, self.batch_size)
        baseline, ratios, base_rates = _extractor(candidates[0]), [], []
        for candidate in candidates[1:]:
            base_rate, rate = self._rates([baseline, _extractor(candidate)], pixels)
            base_rates.append(base_rate)  # the candidate's engine is freed before the next
            ratios.append(rate / base_rate)
        base = float(np.median(base_rates)) if base_rates else \
            self._rates([baseline], pixels)[0]
        candidates[0].images_per_s = base
        for candidate, ratio in zip(candidates[1:], ratios):
            candidate.images_per_s = base * ratio

    def _rates(self, extractors, pixels) -> list[float]:
        from fexport.runtime import timing

        runners = [timing.Runner(str(i), e.predict) for i, e in enumerate(extractors)]
        return [row["images_per_s"]
                for row in timing.bench_batch(runners, pixels, 2, self.iters, None)]


def _extractor(candidate) -> FeatureExtractor:
    return FeatureExtractor(candidate.file, candidate.device, backend=candidate.backend)


def _finish(candidates, reference, output, batch_size, min_cosine_required,
            notes) -> OptimizeResult:
    baseline = candidates[0].images_per_s  # float32 on ONNX Runtime, the reference
    fastest_fp32 = max(c.images_per_s for c in candidates if c.precision == "fp32")
    passing = [c for c in candidates if c.passed and c.precision != "fp32"
               and c.images_per_s > fastest_fp32]
    rows = _with_gains([c.row(baseline) for c in candidates])
    result = OptimizeResult(rows, None, None, batch_size, min_cosine_required, notes)
    if not passing:
        notes.append("nothing beats float32 within the gate: no file written")
        return result
    best = max(passing, key=lambda c: c.images_per_s)
    result.chosen = best.row(baseline)
    result.written = _write(best, reference.contract, output, result)
    if best.device == "tensorrt":  # a contract names a backend, not a device
        notes.append(f"{output} was measured on TensorRT: open it with --device tensorrt")
    return result


def _with_gains(rows) -> list[dict]:
    """Each INT8 row with nodes in float gains (min cosine) over the plain INT8 of its method
    on the same backend: "int8 minmax, 3 nodes in float" over "int8 minmax", and NNCF with
    accuracy control over NNCF without."""
    plain = {(r["candidate"], r["backend"]): r["min_cosine"] for r in rows}
    for row in rows:
        method = row["candidate"].split(",")[0].replace("nncf-accuracy", "nncf")
        base = (method, row["backend"])
        row["gain"] = row["min_cosine"] - plain[base] \
            if row["kept_float"] and base in plain and base[0] != row["candidate"] else None
    return rows


def _write(best, contract, output, result) -> str:
    onnx = require("onnx", "writing the optimized variant")
    table = {"batch_size": result.batch_size, "min_cosine_required": result.min_cosine_required,
             "chosen": best.name + f" on {best.backend}", "candidates": result.rows}
    chosen = dataclasses.replace(contract, precision=_contract_precision(best.precision),
                                 backend=best.backend, quantization=best.report,
                                 optimization=table)
    write_onnx(onnx.load(best.file), chosen, output)
    return str(output)


def _contract_precision(precision) -> str:
    return "float32" if precision == "fp32" else precision
