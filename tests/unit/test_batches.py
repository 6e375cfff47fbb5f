"""runtime/batches.py: an image written into its batch slot holds exactly the values the copying
path (float32, stack, to_model_input) gave, in every layout and dtype; the batch is the engine's
input as it is; `pixels` gives it, copied or as the reused buffer."""

from __future__ import annotations

import numpy as np
import pytest

from fexport.runtime import FeatureExtractor
from fexport.runtime.batches import BatchLayout, write
from fexport.runtime.contract import InputSpec, to_model_input
from fexport.runtime.files import images

RNG = np.random.default_rng(5)
SOURCES = {
    "uint8": RNG.integers(0, 256, (6, 5, 3)).astype(np.uint8),
    "uint16": RNG.integers(0, 65536, (6, 5, 1)).astype(np.uint16),  # a 16-bit grayscale PNG
    # float arrays given by a user: fractions, and values outside 0..255 to be clipped for uint8
    "float32": RNG.uniform(-20, 300, (6, 5, 3)).astype(np.float32),
}


class _Contract:
    def __init__(self, layout, dtype, channels, baked=True, preprocessing="none"):
        self.input = InputSpec("x", 6, 5, channels, layout, dtype)
        self.preprocessing_baked, self.preprocessing = baked, preprocessing
        self.preprocessing_scale = self.preprocessing_offset = None


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_slot_holds_what_the_copying_path_gave(layout, dtype, source):
    pixels = SOURCES[source]
    if layout == "nhw":
        pixels = pixels[..., :1]
    contract = _Contract(layout, dtype, pixels.shape[2])
    batch = BatchLayout.of(contract).empty(2)
    write(batch[1], pixels, layout)
    expected = to_model_input(contract, pixels.astype(np.float32)[None])[0]
    assert batch.dtype == expected.dtype and batch[1].shape == expected.shape
    np.testing.assert_array_equal(batch[1], expected)


def test_a_graph_that_preprocesses_reads_the_batch_as_it_is():
    layout = BatchLayout.of(_Contract("nchw", "uint8", 3))
    assert (layout.shape, layout.dtype, layout.model_ready) == ((3, 6, 5), "uint8", True)
    batch = layout.empty(2)
    assert layout.model_input(None, batch) is batch


def test_without_baked_preprocessing_the_batch_is_float_pixels_made_input_after():
    contract = _Contract("nchw", "float32", 3, baked=False, preprocessing="tf")
    layout = BatchLayout.of(contract)
    assert (layout.shape, layout.dtype, layout.model_ready) == ((6, 5, 3), "float32", False)
    batch = layout.empty(1)
    write(batch[0], SOURCES["uint8"], layout.layout)
    np.testing.assert_array_equal(layout.model_input(contract, batch),
                                  to_model_input(contract, SOURCES["uint8"][None] * 1.0))


def test_a_view_of_memory_starts_at_its_offset():
    layout = BatchLayout((2, 2, 1), "uint8", "nhwc", True)
    memory = bytearray(layout.nbytes(2) * 2)
    layout.view(memory, 2, layout.nbytes(2))[0, 0, 0, 0] = 7
    assert layout.nbytes(2) == 8 and memory[8] == 7 and sum(memory) == 7


def test_pixels_are_the_engine_input_copied_or_the_reused_buffer(tiny_model, image_paths,
                                                                 pixels):
    extractor = FeatureExtractor(tiny_model, device="cpu", workers=2)
    copied = list(extractor.pixels(image_paths, batch_size=1))
    np.testing.assert_array_equal(np.concatenate([b.pixels for b in copied]), pixels)
    assert [b.keys for b in copied] == [[p] for p in image_paths]
    shared = [b.pixels for b in extractor.pixels(image_paths, batch_size=1, copy=False)]
    depth = len({id(p.base) for p in shared})  # the ring's buffers, used in turn
    assert 1 < depth < len(image_paths) and np.shares_memory(shared[0], shared[depth])


def test_a_bad_file_leaves_its_slot_out_and_is_named(tiny_model, image_paths, pixels, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    extractor = FeatureExtractor(tiny_model, device="cpu", workers=2)
    (batch,) = extractor.pixels([image_paths[0], str(bad), image_paths[2]], batch_size=4)
    assert batch.keys == [image_paths[0], image_paths[2]]
    np.testing.assert_array_equal(batch.pixels, pixels[[0, 2]])
    assert batch.failures[0][0] == str(bad) and "damaged" in batch.failures[0][1]


def test_load_native_reads_arrays_as_load_does(pixels):
    options = images.LoadOptions(16, 16)
    got = images.load_native(pixels[0].astype(np.uint8), options)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, images.load(pixels[0], options))
