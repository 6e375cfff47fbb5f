"""runtime/contract.py: the contract in the file's metadata, read without onnx or an engine;
one inferred for a file made elsewhere; pixels turned into the input the contract describes."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fexport.errors import ContractError, FexportError, ModelNotFoundError, UsageError
from fexport.models import preprocessing
from fexport.runtime import contract as contracts
from fexport.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from fexport.runtime.contract import Contract, InputSpec
from unit.conftest import TINY, encode_varint, metadata_entry


def test_the_tiny_models_contract_is_read_from_its_bytes(tiny_model):
    contract = contracts.stored_contract(tiny_model)
    assert contract.input == InputSpec("images", 16, 16, 3)
    assert (contract.source, contract.head, contract.feature_dim) == ("tiny_features", "avg", 4)
    assert contract.preprocessing == "tf" and contract.preprocessing_baked
    assert contract.precision == "float32" and contract.seed == 0


def test_the_metadata_reader_agrees_with_onnxruntime(tiny_model):
    ours = contracts.read_metadata(tiny_model)
    theirs = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    assert ours == dict(theirs)
    assert set(ours) == {contracts.METADATA_KEY}


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=300), max_size=4))
def test_any_metadata_reads_back_beside_a_large_skipped_field(tmp_path_factory, props):
    """The graph (field 7) is skipped by seeking; entries before and after it are all read."""
    graph = encode_varint(7 << 3 | 2) + encode_varint(5000) + b"\x00" * 5000
    header = encode_varint(1 << 3) + encode_varint(8)  # ir_version 8, a varint field
    fixed = encode_varint(99 << 3 | 5) + b"\x01\x02\x03\x04"  # a fixed32 field, skipped
    entries = [metadata_entry(k, v) for k, v in props.items()]
    path = tmp_path_factory.mktemp("meta") / "m.onnx"
    path.write_bytes(header + b"".join(entries[:1]) + graph + fixed + b"".join(entries[1:]))
    assert contracts.read_metadata(path) == props


@pytest.mark.parametrize("data, words", [
    (b"\x0f\x00", "wire type 7"),
    (b"\x72\x80", "ends inside a protobuf varint"),
    (b"\x72", "ends inside a protobuf field"),
])
def test_bytes_that_are_not_protobuf_are_refused(tmp_path, data, words):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(FexportError, match=words):
        contracts.read_metadata(path)
    with pytest.raises(FexportError, match="cannot load it as an ONNX model"):
        contracts.stored_contract(path)


def test_plain_mistakes_are_named_before_any_parsing(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        contracts.stored_contract(tmp_path / "missing.onnx")
    with pytest.raises(ModelNotFoundError, match="the file is empty"):
        contracts.stored_contract(tmp_path / "empty.onnx")
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        contracts.stored_contract(tmp_path)


def test_a_file_made_elsewhere_has_no_contract(plain_model):
    assert contracts.read_metadata(plain_model) == {}
    assert contracts.stored_contract(plain_model) is None
    with pytest.raises(UsageError, match="input_size"):
        contracts.read_contract(plain_model)


def test_a_contract_is_inferred_from_the_engines_input(plain_model):
    engine = OnnxRuntimeBackend(plain_model, "cpu")
    inferred = contracts.read_contract(plain_model, (16, 16), engine)
    assert inferred.input == InputSpec("images", 16, 16, 3, "nhwc", "float32")
    assert (inferred.output_name, inferred.feature_dim) == ("features", 4)
    assert inferred.preprocessing_baked and inferred.source == "external"


def test_json_round_trip_keeps_every_field(tiny_script):
    original = dataclasses.replace(tiny_script.contract(), versions={"onnx": "1.23"},
                                   precision="int8", backend="openvino",
                                   optimization={"chosen": "int8"}, flatten_order="nchw")
    assert Contract.from_json(original.to_json()) == original


@pytest.mark.parametrize("text, words", [
    ("not json", "not a valid contract"),
    (json.dumps({"format_version": contracts.FORMAT_VERSION, "input": {"name": "x"}}),
     "not a valid contract"),
    (json.dumps({"format_version": 99}), "format_version 99"),
])
def test_a_broken_or_newer_contract_is_refused(text, words):
    with pytest.raises(ContractError, match=words):
        Contract.from_json(text)


def test_a_contract_of_another_version_in_a_file_is_refused(tiny_variant):
    newer = contracts.FORMAT_VERSION + 1
    with pytest.raises(ContractError, match=f"format_version {newer}; this fexport reads"):
        contracts.stored_contract(tiny_variant(format_version=newer))


def test_input_shape_in_each_layout():
    assert InputSpec("x", 5, 7, 3).shape(2) == (2, 5, 7, 3)
    assert InputSpec("x", 5, 7, 3, "nchw").shape(2) == (2, 3, 5, 7)
    assert InputSpec("x", 5, 7, 1, "nhw").shape(None) == (None, 5, 7)


def test_pixels_pass_unchanged_when_preprocessing_is_baked(tiny_script, pixels):
    out = contracts.to_model_input(tiny_script.contract(), pixels)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, pixels)


def test_the_runtime_applies_preprocessing_that_is_not_baked(tiny_script, pixels):
    contract = dataclasses.replace(tiny_script.contract(), preprocessing="caffe",
                                   preprocessing_baked=False)
    out = contracts.to_model_input(contract, pixels)
    # caffe by hand: RGB -> BGR, minus the ImageNet BGR mean; float32 rounding only.
    by_hand = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_array_equal(out, by_hand)
    assert np.array_equal(preprocessing.apply("caffe", pixels), out)


def test_uint8_inputs_are_rounded_and_clipped_and_nchw_is_transposed(tiny_script):
    contract = dataclasses.replace(tiny_script.contract(),
                                   input=InputSpec("images", 1, 2, 3, "nchw", "uint8"))
    pixels = np.array([[[[-3.0, 0.4, 0.6], [254.5, 255.4, 300.0]]]], np.float32)
    out = contracts.to_model_input(contract, pixels)
    assert out.dtype == np.uint8 and out.shape == (1, 3, 1, 2)
    # np.rint rounds halves to even: 254.5 -> 254.
    np.testing.assert_array_equal(out[0, :, 0, :], [[0, 254], [0, 255], [1, 255]])


# Values no field of a contract may hold, whatever its type: each is refused by name.
WRONG = [["a", "list"], {"an": "object"}, -3, 2.5, "not-a-choice", True]
FIELD_NAMES = sorted(contracts.contract_fields.FIELDS)
INPUT_NAMES = sorted(contracts.contract_fields.INPUT_FIELDS)


def _is_valid(fields, name, value) -> bool:
    return contracts.contract_fields._safe(fields[name][0], value)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.tuples(st.just(""), st.sampled_from(FIELD_NAMES)),
                 st.tuples(st.just("input."), st.sampled_from(INPUT_NAMES))),
       st.sampled_from(WRONG + [None]))
def test_a_contract_field_of_the_wrong_type_or_value_is_refused_by_name(field, value):
    prefix, name = field
    fields = contracts.contract_fields.INPUT_FIELDS if prefix else contracts.contract_fields.FIELDS
    if _is_valid(fields, name, value):
        return  # e.g. None where null is allowed: nothing to refuse
    data = json.loads(contracts.stored_contract(TINY).to_json())
    (data["input"] if prefix else data)[name] = value
    with pytest.raises(ContractError, match=f"{prefix}{name} = "):
        Contract.from_json(json.dumps(data))


def test_the_cli_refuses_a_contract_with_lists_for_fields(tiny_variant):
    path = tiny_variant(feature_dim=[4], backend=["openvino"], flatten_order=["nhwc"])
    for command in (["info", path], ["extract", path, path, "-o", path.with_suffix(".npy")]):
        proc = subprocess.run([sys.executable, "-m", "fexport", *map(str, command)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "fexport contract has" in proc.stderr and "re-export" in proc.stderr


# What fexport wrote before 2026-11-27 (format 1): verification as a summary, the quality report
# under that time's names.
FORMAT_1_VERIFICATION = {"passed": True, "rtol": 1e-4, "min_cosine_threshold": 0.9999,
                         "checks": 5, "max_rel": 2e-7, "min_cosine": 1.0}
FORMAT_1_QUALITY = {"images": 9, "min_cosine": 0.995, "mean_cosine": 0.998, "max_rel": 0.03,
                    "neighbour_overlap_at_5": 0.96, "min_cosine_threshold": 0.99,
                    "linear_probe_accuracy": {"float32": 0.9, "candidate": 0.85},
                    "passed": True, "precision": "int8", "method": "static QDQ"}


def test_a_format_1_contract_is_upgraded_on_open(tiny_variant, pixels, expected_features):
    path = tiny_variant(format_version=1, verification=FORMAT_1_VERIFICATION,
                        quantization=FORMAT_1_QUALITY)
    contract = contracts.stored_contract(path)
    assert contract.format_version == 2  # upgraded in memory; the file is left as it was
    report = contract.verification
    assert report.passed and report.max_rel_allowed == 1e-4 and report.max_rel == 2e-7
    assert report.min_cosine_required == 0.9999 and "5 checks" in report.checks[0].label
    quality = contract.quantization
    assert quality.passed and quality.min_cosine_required == 0.99
    assert (quality.neighbour_overlap, quality.neighbours) == (0.96, 5)
    assert (quality.probe_accuracy_float32, quality.probe_accuracy_candidate) == (0.9, 0.85)
    from fexport.runtime import FeatureExtractor

    features = FeatureExtractor(path, device="cpu").predict(pixels)
    # The numpy reference sums float32 in another order: ~1e-6 relative; 1e-5 leaves room.
    np.testing.assert_allclose(features, expected_features(pixels), rtol=1e-5, atol=1e-6)


def test_a_failed_format_1_verification_stays_failed(tiny_variant):
    failed = {**FORMAT_1_VERIFICATION, "passed": False, "max_rel": 0.2}
    report = contracts.stored_contract(tiny_variant(format_version=1,
                                                    verification=failed)).verification
    assert not report.passed and report.max_rel == 0.2
