"""Batches that stay in the GPU's memory (`--decode gpu`), and the resize that puts each decoded
image into its slot there, on ONNX Runtime: nothing but onnxruntime-gpu, already installed.

nvImageCodec decodes but does not resize (its decode parameters crop a region, no more; checked
in nvidia-nvimgcodec-cu13 0.9.0.20's API). Keras's default resize is nearest, which is a gather:
the rows and columns Pillow would read (files/formats.py asks Pillow for them) pick the pixels.
A two-node ONNX graph (Gather rows, Gather columns, then Cast to the batch's dtype and, for an
NCHW model, Transpose) runs that on the CUDA provider, with the decoded image bound as its input
and the batch slot as its output, through I/O binding: the pixels never cross to the host. The
same graph takes a host image (a CPU fallback, already at the model's size, with every row and
column) and writes it into its device slot. On the CPU provider the same code runs on host
memory, which is how the tests check it against Pillow without a GPU.

The graph is written here as protobuf bytes: the runtime never imports the onnx package.
"""

from __future__ import annotations

import numpy as np

# ONNX's TensorProto element types, and the bits of its protobuf schema the graph needs.
ELEMENT_TYPES = {"uint8": 2, "float32": 1, "int64": 7}
OPSET = 13
INPUT, ROWS, COLUMNS, OUTPUT = "image", "rows", "columns", "slot"


def _varint(value: int) -> bytes:
    """Protobuf's varint: 7 bits a byte, lowest first, the top bit set on all but the last."""
    groups = [(value >> shift) & 0x7F for shift in range(0, max(value.bit_length(), 1), 7)]
    return bytes(group | 0x80 for group in groups[:-1]) + bytes(groups[-1:])


def _field(number: int, payload) -> bytes:
    """A protobuf field: an int as a varint, bytes or str length-delimited."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor_value(name: str, dtype: str, dims) -> bytes:
    """A ValueInfoProto: a tensor of `dtype` whose dimensions are named (all dynamic)."""
    shape = b"".join(_field(1, _field(2, dim)) for dim in dims)
    tensor = _field(1, ELEMENT_TYPES[dtype]) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor))


def _node(op: str, inputs, output: str, **attributes) -> bytes:
    """A NodeProto; int attributes are INT (type 2), lists INTS (type 7)."""
    data = b"".join(_field(1, name) for name in inputs) + _field(2, output) + _field(4, op)
    for key, value in attributes.items():
        body = _field(1, key) + (_field(3, value) + _field(20, 2) if isinstance(value, int)
                                 else b"".join(_field(8, v) for v in value) + _field(20, 7))
        data += _field(5, body)
    return data


def gather_model(dtype: str, layout: str) -> bytes:
    """The ModelProto of the resize: uint8 (H, W, C) image, int64 rows and columns in; the slot,
    (h, w, C) in `dtype`, or (C, h, w) for an "nchw" layout, out."""
    nodes = [_node("Gather", [INPUT, ROWS], "picked_rows", axis=0),
             _node("Gather", ["picked_rows", COLUMNS], "picked", axis=1),
             _node("Cast", ["picked"], "cast" if layout == "nchw" else OUTPUT,
                   to=ELEMENT_TYPES[dtype])]
    if layout == "nchw":
        nodes.append(_node("Transpose", ["cast"], OUTPUT, perm=[2, 0, 1]))
    out_dims = ("channels", "height", "width") if layout == "nchw" else \
        ("height", "width", "channels")
    graph = b"".join(_field(1, node) for node in nodes) + _field(2, "fexport_gather_resize") \
        + _field(11, _tensor_value(INPUT, "uint8", ("in_height", "in_width", "channels"))) \
        + _field(11, _tensor_value(ROWS, "int64", ("height",))) \
        + _field(11, _tensor_value(COLUMNS, "int64", ("width",))) \
        + _field(12, _tensor_value(OUTPUT, dtype, out_dims))
    return _field(1, 8) + _field(2, "fexport") + _field(7, graph) \
        + _field(8, _field(1, "") + _field(2, OPSET))


def copy_model(dtype: str, dims) -> bytes:
    """The ModelProto of a copy: one image slot of `dtype` in, the same out (an Identity), to
    write a host image into a device slot."""
    graph = _field(1, _node("Identity", [INPUT], OUTPUT)) + _field(2, "fexport_copy") \
        + _field(11, _tensor_value(INPUT, dtype, dims)) \
        + _field(12, _tensor_value(OUTPUT, dtype, dims))
    return _field(1, 8) + _field(2, "fexport") + _field(7, graph) \
        + _field(8, _field(1, "") + _field(2, OPSET))


class DeviceBatch:
    """A batch buffer in the memory of `device` ("cuda", or "cpu" for the tests): an OrtValue of
    (size, *shape) `dtype`. `[good]` gives the same memory with only those rows kept, which
    the engine runs on whole (rows are independent at inference) and then selects."""

    def __init__(self, ort, shape, dtype: str, size: int, device="cuda", device_id=0):
        self.shape, self.dtype, self.size = tuple(shape), np.dtype(dtype), size
        self.device, self.device_id, self.rows = device, device_id, None
        self.value = ort.OrtValue.ortvalue_from_shape_and_type(
            (size, *self.shape), self.dtype, device, device_id)
        self.filled = size  # the slots this batch's images went into: the first `filled`

    @property
    def slot_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def pointer(self, slot: int = 0) -> int:
        return self.value.data_ptr() + slot * self.slot_bytes

    def __len__(self) -> int:
        return self.filled if self.rows is None else len(self.rows)

    def __getitem__(self, rows) -> DeviceBatch:
        if isinstance(rows, slice):  # batch[:n], as decoding.Ring hands a batch out
            return self.take(len(range(*rows.indices(self.size))))
        view = object.__new__(DeviceBatch)
        view.__dict__.update(self.__dict__)
        view.rows = list(rows)
        return view

    def take(self, filled: int) -> DeviceBatch:
        """This buffer holding a batch of its first `filled` slots."""
        view = self[range(filled)]
        view.filled, view.rows = filled, None
        return view

    def select(self, features: np.ndarray) -> np.ndarray:
        """The engine's output rows for the rows kept."""
        return features if self.rows is None else features[self.rows]

    def __array__(self, dtype=None, copy=None):
        """A host copy of the rows kept (PixelBatch, and the host path of a model that is not
        ready for the batch as it is)."""
        every = self.value.numpy()[:self.filled]
        return self.select(every).astype(dtype or self.dtype, copy=False)


class DeviceResizer:
    """The gather graph on one session, run for one image at a time into a DeviceBatch slot."""

    def __init__(self, ort, dtype: str, layout: str, device="cuda", device_id=0):
        providers = [("CUDAExecutionProvider", {"device_id": device_id})] \
            if device == "cuda" else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a gather per image: a thread is plenty
        self.session = ort.InferenceSession(gather_model(dtype, layout), options,
                                            providers=providers)
        self.copier = ort.InferenceSession(copy_model(dtype, ("a", "b", "c")), options,
                                           providers=providers)
        self.device, self.device_id, self.layout = device, device_id, layout

    def upload(self, batch: DeviceBatch, slot: int, pixels: np.ndarray) -> None:
        """One image already in the slot's shape and dtype, from the host into `slot`."""
        binding = self.copier.io_binding()
        binding.bind_cpu_input(INPUT, np.ascontiguousarray(pixels, batch.dtype))
        binding.bind_output(OUTPUT, batch.device, batch.device_id, batch.dtype,
                            list(batch.shape), batch.pointer(slot))
        self.copier.run_with_iobinding(binding)
        binding.synchronize_outputs()

    def write(self, batch: DeviceBatch, slot: int, image, rows, columns) -> None:
        """`image`: a uint8 (H, W, C) numpy array on the host, or (pointer, shape) of one in
        the device's memory; its pixels at `rows` x `columns` go into `batch`'s `slot`."""
        binding = self.session.io_binding()
        if isinstance(image, np.ndarray):
            binding.bind_cpu_input(INPUT, np.ascontiguousarray(image, np.uint8))
        else:
            pointer, shape = image
            binding.bind_input(INPUT, self.device, self.device_id, np.uint8, list(shape),
                               pointer)
        binding.bind_cpu_input(ROWS, np.ascontiguousarray(rows, np.int64))
        binding.bind_cpu_input(COLUMNS, np.ascontiguousarray(columns, np.int64))
        binding.bind_output(OUTPUT, batch.device, batch.device_id, batch.dtype,
                            list(batch.shape), batch.pointer(slot))
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # the slot is written before the engine's stream reads
