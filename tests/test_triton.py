"""fexport triton's model repository, read back by tools nobody here wrote: Triton's own
ModelConfig message (tritonclient's model_config_pb2) parses config.pbtxt, and the onnx package
reads the graph the config must describe. The layouts, dtypes and fixed batch come from real
fexport exports of tiny Keras models (skipped without TensorFlow)."""

from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from conftest import run_cli
from fexport.errors import ContractError, OutputError, UsageError
from fexport.runtime.contract import METADATA_KEY, Contract, stored_contract, write_onnx
from fexport.serve.triton import write_repository

TINY = Path(__file__).parent / "data" / "tiny_features.onnx"
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.UINT8: mc.TYPE_UINT8}


def parse(model) -> mc.ModelConfig:
    return text_format.Parse(model.config_path.read_text(), mc.ModelConfig())


def graph_io(path):
    """[(name, Triton data type, dims)] of the graph's inputs and outputs, as onnx reads them
    (a symbolic dim, the dynamic batch, reads as its name)."""
    graph = onnx.load(str(path)).graph
    return [(v.name, ONNX_TO_TRITON[v.type.tensor_type.elem_type],
             [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in (*graph.input, *graph.output)]


def config_io(config):
    return [(t.name, t.data_type, list(t.dims)) for t in (*config.input, *config.output)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Real fexport exports of two tiny Keras convnets: NCHW uint8, grayscale "nhw", and a
    fixed batch of 2 (about 10 s, most of it importing TensorFlow)."""
    keras = pytest.importorskip("keras")
    from fexport.exporter import ExportOptions, export

    folder = tmp_path_factory.mktemp("triton_exports")
    keras.utils.set_random_seed(1)
    for channels in (3, 1):
        inputs = keras.Input((12, 10, channels))
        conv = keras.layers.Conv2D(5, 3, name="conv")(inputs)
        keras.Model(inputs, conv).save(folder / f"c{channels}.keras")
    cases = {"nchw_uint8": ("c3", {"layout": "nchw", "input_dtype": "uint8"}),
             "gray_nhw": ("c1", {"layout": "nhw"}),
             "batch2": ("c3", {"batch": 2})}
    for name, (model, options) in cases.items():
        export(ExportOptions(str(folder / f"{model}.keras"), layers=["conv"], head="avg",
                             output=str(folder / f"{name}.onnx"), **options))
    return {name: folder / f"{name}.onnx" for name in cases}


def test_the_config_parses_as_triton_model_config(tmp_path):
    model = write_repository(TINY, tmp_path / "repo", max_batch_size=16, instances=3,
                             max_queue_delay_us=500, max_queue_size=64)
    config = parse(model)
    assert (model.name, config.name, config.backend) == ("tiny_features", "tiny_features",
                                                         "onnxruntime")
    assert model.directory == tmp_path / "repo" / "tiny_features"
    assert config.max_batch_size == 16
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    policy = config.dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.timeout_action) == (64, mc.ModelQueuePolicy.REJECT)
    [group] = config.instance_group
    assert (group.count, group.kind) == (3, mc.ModelInstanceGroup.KIND_CPU)
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    carried = Contract.from_json(config.parameters[METADATA_KEY].string_value)
    assert carried == stored_contract(TINY)
    assert model.config_text == model.config_path.read_text()


def test_inputs_and_outputs_match_the_onnx_graph(tmp_path):
    config = parse(write_repository(TINY, tmp_path))
    [(in_name, in_type, in_dims), (out_name, out_type, out_dims)] = graph_io(TINY)
    # Triton's dims leave out the batch axis; the graph's first dim is the dynamic batch.
    assert isinstance(in_dims[0], str) and isinstance(out_dims[0], str)
    assert config_io(config) == [(in_name, in_type, in_dims[1:]), (out_name, out_type,
                                                                   out_dims[1:])]
    assert (in_name, in_dims[1:], out_dims[1:]) == ("images", [16, 16, 3], [4])
    assert config.input[0].format == mc.ModelInput.FORMAT_NHWC


def test_the_model_file_is_a_byte_copy(tmp_path):
    model = write_repository(TINY, tmp_path, name="tiny")
    assert model.model_path == tmp_path / "tiny" / "1" / "model.onnx"
    assert model.model_path.read_bytes() == TINY.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no temporary leftovers


def test_gpu_and_tensorrt_fp16(tmp_path):
    config = parse(write_repository(TINY, tmp_path, gpu=True, tensorrt_fp16=True))
    [group] = config.instance_group
    assert (group.count, group.kind) == (1, mc.ModelInstanceGroup.KIND_GPU)
    [accelerator] = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {"precision_mode": "FP16"}
    plain_gpu = parse(write_repository(TINY, tmp_path, name="gpu", gpu=True))
    assert plain_gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert not plain_gpu.optimization.execution_accelerators.gpu_execution_accelerator


def test_tensorrt_without_gpu_is_refused(tmp_path):
    with pytest.raises(UsageError, match="tensorrt_fp16=True with gpu=False.*--gpu"):
        write_repository(TINY, tmp_path, tensorrt_fp16=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option", [{"max_batch_size": 0}, {"instances": 0},
                                    {"max_queue_size": -1}, {"max_batch_size": True}])
def test_bad_numbers_are_refused(tmp_path, option):
    with pytest.raises(UsageError, match=f"{next(iter(option))} .*expected a whole number"):
        write_repository(TINY, tmp_path, **option)


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", ".."])
def test_a_name_that_is_no_folder_name_is_refused(tmp_path, name):
    with pytest.raises(UsageError, match="plain folder name"):
        write_repository(TINY, tmp_path, name=name)


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path):
    write_repository(TINY, tmp_path, max_batch_size=8)
    folder = tmp_path / "tiny_features"
    with pytest.raises(OutputError, match=f"{folder} already exists.*--overwrite"):
        write_repository(TINY, tmp_path, max_batch_size=4)
    assert parse(write_repository(TINY, tmp_path, max_batch_size=4, overwrite=True)) \
        .max_batch_size == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_features"]
    assert sorted(p.name for p in folder.iterdir()) == ["1", "config.pbtxt"]


def test_a_file_without_an_fexport_contract_is_refused(tmp_path):
    proto = onnx.load(str(TINY))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    assert stored_contract(plain) is None
    with pytest.raises(ContractError, match="no fexport contract.*export the model with fexport"):
        write_repository(plain, tmp_path / "repo")
    assert not (tmp_path / "repo" / "plain").exists()


def test_quotes_and_non_ascii_in_the_contract_survive_the_text_format(tmp_path):
    contract = stored_contract(TINY)
    contract.source = 'caf\u00e9 "v2" \\ \u6a21\u578b\n'
    odd = tmp_path / "odd.onnx"
    write_onnx(onnx.load(str(TINY)), contract, odd)
    config = parse(write_repository(odd, tmp_path / "repo", name="caf\u00e9"))
    assert config.name == "caf\u00e9"
    assert Contract.from_json(config.parameters[METADATA_KEY].string_value) == contract


def test_nchw_uint8_export(exports, tmp_path):
    path = exports["nchw_uint8"]
    config = parse(write_repository(path, tmp_path))
    [(in_name, in_type, in_dims), (out_name, out_type, out_dims)] = graph_io(path)
    assert config_io(config) == [(in_name, in_type, in_dims[1:]), (out_name, out_type,
                                                                   out_dims[1:])]
    assert (in_type, in_dims[1:], out_dims[1:]) == (mc.TYPE_UINT8, [3, 12, 10], [5])
    assert config.input[0].format == mc.ModelInput.FORMAT_NCHW
    assert config.max_batch_size == 32 and config.HasField("dynamic_batching")


def test_grayscale_nhw_export_has_no_image_format(exports, tmp_path):
    path = exports["gray_nhw"]
    config = parse(write_repository(path, tmp_path))
    [(in_name, _, in_dims), _] = graph_io(path)
    assert (config.input[0].name, list(config.input[0].dims)) == (in_name, in_dims[1:])
    assert list(config.input[0].dims) == [12, 10]
    assert config.input[0].format == mc.ModelInput.FORMAT_NONE


def test_a_fixed_batch_export_is_served_without_triton_batching(exports, tmp_path):
    """Triton's rule for a model that cannot batch: max_batch_size 0, dims with the batch, no
    dynamic batching; FORMAT_NHWC would need exactly 3 dims, so the format is NONE."""
    path = exports["batch2"]
    config = parse(write_repository(path, tmp_path))
    assert config_io(config) == graph_io(path)  # full dims, batch included
    assert list(config.input[0].dims) == [2, 12, 10, 3] and list(config.output[0].dims) == [2, 5]
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert config.input[0].format == mc.ModelInput.FORMAT_NONE
    assert Contract.from_json(config.parameters[METADATA_KEY].string_value).input.batch == 2


def test_the_cli_writes_the_repository(tmp_path):
    proc = run_cli("triton", TINY, "-o", tmp_path / "repo", "--max-batch-size", "8",
                   "--instances", "2")
    config = tmp_path / "repo" / "tiny_features" / "config.pbtxt"
    assert str(config) in proc.stdout
    parsed = text_format.Parse(config.read_text(), mc.ModelConfig())
    assert parsed.max_batch_size == 8 and parsed.instance_group[0].count == 2
    again = run_cli("triton", TINY, "-o", tmp_path / "repo", check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr
