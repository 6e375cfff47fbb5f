"""The typed verification and quality reports: what passes, the lines users read, and the
plain dicts they become in files (the contract, --report, --json) and come back from."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from fexport import reports
from fexport.errors import ContractError
from fexport.reports import CheckResult, NoiseFloor, QualityReport, VerificationReport
from fexport.runtime.contract import Contract, stored_contract

FLOOR = NoiseFloor(input_noise=1e-7, max_rel=5e-4, min_cosine=0.999999)


def check(outcome=reports.OK, label="random pixels, batch 1", floor=None, **changes):
    values = dict(keras_shape=(1, 4), onnx_shape=(1, 4), max_abs=1e-6, max_rel=2e-7,
                  min_cosine=1.0)
    return CheckResult(label, **{**values, **changes}, outcome=outcome, noise_floor=floor)


def verification(*checks) -> VerificationReport:
    return VerificationReport(checks or (check(),), max_rel_allowed=1e-4,
                              min_cosine_required=0.9999)


def quality(**changes) -> QualityReport:
    values = dict(images=15, min_cosine=0.9911, mean_cosine=0.9962, max_rel=0.08,
                  neighbour_overlap=0.94, neighbours=5, min_cosine_required=0.99,
                  precision="int8", method="static QDQ, per-channel, percentile",
                  calibration_samples=24, measured_on="onnxruntime cpu int8",
                  reference="onnxruntime cpu fp32")
    return QualityReport(**{**values, **changes})


def test_only_ok_and_rounding_checks_pass():
    passing = {reports.OK, reports.ROUNDING}
    for outcome in reports.OUTCOMES:
        assert check(outcome).passed == (outcome in passing)
        assert check(outcome).rounding_explains == (outcome in (reports.ROUNDING,
                                                                reports.UNRESOLVABLE))


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="'maybe': expected one of"):
        check("maybe")


def test_verification_passes_only_when_every_check_does():
    ok, rounding = check(), check(reports.ROUNDING, "images 1-3", FLOOR, max_rel=8e-4)
    assert verification(ok, rounding).passed
    failed = verification(ok, check(reports.DEFECT, "images 1-3", FLOOR, max_rel=0.02))
    assert not failed.passed and failed.first_failure.label == "images 1-3"
    assert verification(ok).first_failure is None


def test_measured_values_and_limits_have_their_own_names():
    report = verification(check(max_abs=3e-6, max_rel=1e-6, min_cosine=0.99999995),
                          check(label="b", max_abs=1e-6, max_rel=4e-6, min_cosine=0.9999999))
    # The worst of each over the checks: the largest errors, the lowest cosine.
    assert (report.max_abs, report.max_rel, report.min_cosine) == (3e-6, 4e-6, 0.9999999)
    assert (report.max_rel_allowed, report.min_cosine_required) == (1e-4, 0.9999)


def test_verifiable_unless_rounding_is_too_loud_to_resolve():
    loud = check(reports.UNRESOLVABLE, floor=NoiseFloor(1e-7, 0.5, 0.6), max_rel=0.9)
    assert verification(check()).verifiable and not verification(check(), loud).verifiable
    assert verification(loud).rounding_explains and not verification(check()).rounding_explains


def test_verification_lines_keep_the_wording_users_see():
    report = verification(check(), check(reports.ROUNDING, "images 1-3", FLOOR, max_rel=8e-4,
                                         min_cosine=0.9999998))
    assert report.lines() == [
        "ok   random pixels, batch 1: shape (1, 4)  max abs 1e-06  max rel 2e-07  "
        "min cosine 1.0000000",
        "ok   images 1-3: shape (1, 4)  max abs 1e-06  max rel 0.0008  min cosine 0.9999998; "
        "Keras vs itself with 1e-07 input noise: max rel 0.0005, min cosine 0.9999990 -> "
        "within float32 rounding as this model amplifies it",
        "verification passed"]


@pytest.mark.parametrize("outcome, cause", [
    (reports.UNRESOLVABLE, "float32 rounding amplified beyond what verification can resolve"),
    (reports.DEFECT, "far beyond rounding: a conversion defect")])
def test_a_failed_check_says_why(outcome, cause):
    lines = verification(check(outcome, floor=FLOOR, max_rel=0.02)).lines()
    assert len(lines) == 1 and lines[0].startswith("FAIL random pixels, batch 1: shape (1, 4)")
    assert lines[0].endswith(f"-> {cause}")


def test_a_shape_mismatch_names_both_shapes():
    mismatch = check(reports.SHAPE_MISMATCH, keras_shape=(3, 4), onnx_shape=(3, 5),
                     max_abs=math.inf, max_rel=math.inf, min_cosine=-1.0)
    assert verification(mismatch).lines() == [
        "FAIL random pixels, batch 1: shape mismatch, keras (3, 4) vs onnx (3, 5)"]


def test_verification_dict_round_trip_through_json():
    report = verification(check(), check(reports.DEFECT, "images 1-8", FLOOR, max_rel=0.02),
                          check(reports.SHAPE_MISMATCH, "c", keras_shape=(3, 4),
                                onnx_shape=(3, 5), max_rel=math.inf, min_cosine=-1.0))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False and data["max_rel_allowed"] == 1e-4
    assert data["min_cosine_required"] == 0.9999 and data["min_cosine"] == -1.0
    assert data["checks"][1]["noise_floor"] == dataclasses.asdict(FLOOR)
    assert data["checks"][2]["onnx_shape"] == [3, 5] and data["checks"][0]["passed"] is True
    assert VerificationReport.from_dict(data) == report


def test_derived_keys_in_a_dict_are_recomputed_not_trusted():
    data = verification(check(reports.DEFECT, floor=FLOOR, max_rel=0.02)).to_dict()
    data["passed"] = data["checks"][0]["passed"] = True
    assert VerificationReport.from_dict(data).passed is False
    stored = {**quality(min_cosine=0.5).to_dict(), "passed": True}
    assert QualityReport.from_dict(stored).passed is False


def test_quality_passes_at_the_required_cosine_and_not_below():
    assert quality(min_cosine=0.99).passed and not quality(min_cosine=0.98999).passed


def test_quality_lines_keep_the_wording_users_see():
    assert quality().lines() == [
        "int8 (static QDQ, per-channel, percentile, 24 calibration images) vs float32 on 15 "
        "other images:",
        "  cosine min 0.99110 mean 0.99620 (threshold 0.99), max rel error 0.08",
        "  nearest-5 overlap 94.0%"]
    probed = quality(probe_accuracy_float32=0.8, probe_accuracy_candidate=0.75)
    assert probed.lines()[-1] == "  logistic regression accuracy: float32 80.0%, int8 75.0%"


def test_quality_dict_round_trip_through_json():
    report = quality(probe_accuracy_float32=0.8, probe_accuracy_candidate=0.75,
                     kept_float=["conv_1", "conv_2"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and data["kept_float"] == ["conv_1", "conv_2"]
    assert data["min_cosine"] == 0.9911 and data["min_cosine_required"] == 0.99
    assert QualityReport.from_dict(data) == report and report.kept_float == ("conv_1", "conv_2")


def test_the_contract_holds_typed_reports_and_stores_plain_dicts(tiny_script):
    contract = dataclasses.replace(tiny_script.contract(), precision="int8",
                                   verification=verification(), quantization=quality())
    stored = json.loads(contract.to_json())
    assert stored["verification"] == verification().to_dict()
    assert stored["quantization"] == quality().to_dict()
    again = Contract.from_json(contract.to_json())
    assert again == contract and isinstance(again.quantization, QualityReport)
    plain = tiny_script.contract()  # an export with --no-verify, not a variant
    assert Contract.from_json(plain.to_json()).verification is None


def test_a_file_carries_its_reports(tiny_variant):
    path = tiny_variant(verification=verification().to_dict(),
                        quantization=quality().to_dict(), precision="int8")
    contract = stored_contract(path)
    assert contract.verification == verification() and contract.quantization == quality()


def test_a_report_in_the_wrong_shape_is_a_contract_error(tiny_script):
    data = json.loads(tiny_script.contract().to_json())
    data["verification"] = {"passed": True, "checks": 2}  # a summary, not a report
    with pytest.raises(ContractError, match="not a valid contract"):
        Contract.from_json(json.dumps(data))
