"""The Python API for notebooks and scripts, the same verbs as the CLI:

    import fexport
    result = fexport.export(model, layer="block5_pool", head="flatten", output="f.onnx")
    rows = fexport.layers(model)
    X = fexport.FeatureExtractor("f.onnx").extract(images)

`model` is a registry name ("vgg16"), a model file, or a live keras.Model / Sequential. The
defaults are the library's own (ExportOptions), the same the CLI uses. TensorFlow is imported
only when one of these functions runs.
"""

from __future__ import annotations

import dataclasses
import os

from fexport.errors import UsageError


def export(model, layer=None, *, head=None, output=None, verify_images=None, **options):
    """Cut `model` at `layer` (a name, an index, "penultimate", "block:K" for KerasHub
    transformers, or a list of them to join), add `head` ("flatten", "avg", "max", "none";
    for tokens "cls", "mean", "cls+mean", "pooled"; default flatten), bake preprocessing,
    write `output` (an .onnx file) and verify it against Keras. Other options are
    ExportOptions' fields: weights, input_size, layout, input_dtype, batch, preprocess,
    bake_preprocessing, flatten_order, normalize ("l2"), saved_model, opset, verify, rtol,
    min_cosine, unsafe, seed.

    Returns an ExportResult (written paths, contract, verification report; `to_dict()` for
    JSON). Raises VerificationError when the ONNX model differs from Keras."""
    from fexport.extras import installed
    from fexport.models.weights import check_download_possible

    if installed("tensorflow"):  # else the missing export extra is the first thing to say
        weights = options.get("weights")  # None: the default, imagenet
        check_download_possible(model, "imagenet" if weights is None else weights)
    from fexport.exporter import export as run_export

    chosen = dict(options, head=head, output=None if output is None else str(output))
    if layer is not None:
        chosen["layers"] = [str(x) for x in (layer if isinstance(layer, (list, tuple))
                                              else [layer])]
    if verify_images is not None:
        chosen["verify_images"] = _image_list(verify_images)
    return run_export(_export_options(model, chosen))


def _export_options(model, chosen):
    from fexport.exporter import ExportOptions

    known = {f.name for f in dataclasses.fields(ExportOptions)} - {"source"}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise UsageError(f"fexport.export() got unknown option(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(sorted(known))}")
    given = {name: value for name, value in chosen.items() if value is not None}
    return ExportOptions(source=model, **given)


def _image_list(images) -> list:
    from fexport.runtime.files.images import list_images

    if isinstance(images, (str, os.PathLike)):
        return list_images(images) if os.path.isdir(images) else [str(images)]
    return [str(p) for p in images]


def layers(model, *, weights="none", input_size=None, unsafe=False) -> list:
    """Every layer of `model` with its output shape and the width each head would give there
    (LayerRow objects; `to_dict()` for JSON), as `fexport layers` prints them."""
    from fexport.exporter.layer_table import layer_rows, load_for_listing

    return layer_rows(*load_for_listing(model, weights, input_size, unsafe))
