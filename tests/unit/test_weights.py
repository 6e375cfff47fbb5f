"""models/weights.py: refusing at once an imagenet download that plainly cannot happen, and
never when the weights are cached or not needed. The host is a .invalid name (RFC 2606: it
never resolves), so no network is needed or touched."""

import pytest

from fexport.errors import WeightsUnavailableError
from fexport.models.weights import check_download_possible

NOWHERE = "weights.fexport.invalid"


def test_uncached_weights_from_a_host_that_does_not_resolve_are_refused_at_once(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not resolve.*--weights none"):
        check_download_possible("vgg16", "imagenet", cache=tmp_path, host=NOWHERE)


@pytest.mark.parametrize("model, cached", [
    ("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("ConvNeXtTiny", "convnext_tiny_notop.h5"),
    ("MobileNetV3Small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
])
def test_cached_weights_need_no_network(tmp_path, model, cached):
    (tmp_path / cached).write_bytes(b"weights")
    check_download_possible(model, "imagenet", cache=tmp_path, host=NOWHERE)


@pytest.mark.parametrize("model, weights", [("vgg16", "none"), ("vgg16", "/some/file.h5"),
                                            ("not_a_registry_model", "imagenet")])
def test_nothing_to_download_is_never_refused(tmp_path, model, weights):
    check_download_possible(model, weights, cache=tmp_path, host=NOWHERE)
