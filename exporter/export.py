"""The export pipeline: load, cut, add head and preprocessing, convert, verify, save."""

from __future__ import annotations

from dataclasses import dataclass, field

from fexport import __version__, models
from fexport.comparison import EXPORT_MAX_REL, EXPORT_MIN_COSINE
from fexport.errors import LayerError, UsageError, VerificationError
from fexport.export_options import RECOMMENDED, ExportOptions
from fexport.reports import SHAPE_MISMATCH, CheckResult, VerificationReport
from fexport.runtime.contract import Contract, InputSpec, write_onnx

from . import convert, cut, graph, heads, hub, hub_cuts, layouts, load, save, sources
from . import verify as verification

__all__ = ["RECOMMENDED", "ExportOptions", "ExportResult", "export"]

@dataclass
class ExportResult:
    contract: Contract
    written: list[str]
    report: VerificationReport | None  # None with verify=False

    def summary(self) -> str:
        c = self.contract
        return (f"exported {c.source} [{', '.join(c.layers)}] + {c.head} -> "
                f"{', '.join(self.written)}: input {c.input.shape('N')} {c.input.dtype}, "
                f"features (N, {c.feature_dim})")

    def __repr__(self) -> str:
        if self.report is None:
            return f"<{self.summary()}; not verified>"
        r = self.report
        state = "passed" if r.passed else "FAILED"
        return (f"<{self.summary()}; verification {state}: {len(r.checks)} checks, max rel "
                f"{r.max_rel:.2g}, min cosine {r.min_cosine:.7f}>")

    def to_dict(self) -> dict:
        import json

        return {"written": list(self.written), "contract": json.loads(self.contract.to_json()),
                "verification": self.report.to_dict() if self.report else None}


@dataclass
class Prepared:
    """A loaded and cut model with everything the graph and the contract need."""

    cut_model: object
    source: sources.Source
    layer_names: list[str]
    input_spec: InputSpec
    mode: str
    spec: object  # the registry ModelSpec, or None for a file
    layout: layouts.ModelLayout  # how the Keras model takes its images and holds its outputs
    flatten_order: str  # options.flatten_order, or the cut layer's own
    renamed: list = field(default_factory=list)  # (layer, name) renamed for TensorFlow scopes
    hub: hub.ImageSide | None = None  # a KerasHub model's image side, with its converter

    @property
    def prefix_tokens(self) -> int | None:
        return self.hub.prefix_tokens if self.hub else None

    @property
    def converter(self) -> hub.Converter | None:
        return self.hub.converter if self.hub else None


def export(options: ExportOptions) -> ExportResult:
    _check_options(options)
    prepared = prepare(options)
    try:
        return _convert_and_verify(prepared, options)
    finally:
        cut.restore_names(prepared.renamed)  # a live model keeps its own layer names


def _convert_and_verify(prepared, options) -> ExportResult:
    contract = make_contract(prepared, options)
    function, lifted = _feature_function(prepared, contract, options, lift=True)
    proto = convert.to_onnx(function, lifted, options.opset)
    if save.needs_external_data(proto):
        return _convert_large(proto, prepared, contract, options)
    report = _verify(proto, contract, prepared, options) if options.verify else None
    contract.verification = report
    written = []
    if options.output:
        write_onnx(proto, contract, options.output)
        written.append(str(options.output))
    written += _saved_model(prepared, contract, options)
    if report and not report.passed:
        raise VerificationError(_failure_message(report, written), report)
    return ExportResult(contract, written, report)


def _convert_large(proto, prepared, contract, options) -> ExportResult:
    """A model past protobuf's 2 GiB: written first, with its weights in a sidecar file, then
    verified from the file (a session cannot be made from bytes that cannot be serialized)."""
    if not options.output:
        raise UsageError(f"the model's weights take {save.initializer_bytes(proto) / 2**30:.1f} "
                         "GiB, past what one ONNX protobuf holds; pass -o FILE.onnx (its "
                         "weights go to FILE.onnx.data)")
    save.write_with_external_data(proto, contract, options.output)
    written = [str(options.output), str(save.sidecar_of(options.output))]
    report = None
    if options.verify:
        report = _verify(str(options.output), contract, prepared, options)
        contract.verification = report
        save.rewrite_contract(options.output, contract)
    written += _saved_model(prepared, contract, options)
    if report and not report.passed:
        raise VerificationError(_failure_message(report, written), report)
    return ExportResult(contract, written, report)


def _saved_model(prepared, contract, options) -> list[str]:
    if not options.saved_model:
        return []
    plain, _ = _feature_function(prepared, contract, options, lift=False)
    save.save_saved_model(plain, prepared.cut_model, contract, options.saved_model)
    return [str(options.saved_model)]


def _feature_function(prepared, contract, options, lift):
    mode = prepared.mode if options.bake_preprocessing else "none"
    steps = graph.Steps(mode, contract.preprocessing_scale, contract.preprocessing_offset,
                        options.head, prepared.flatten_order, prepared.prefix_tokens or 0,
                        options.normalize)
    return graph.feature_function(prepared.cut_model, contract.input, prepared.layout, steps,
                                  contract.output_name, lift)


def _check_options(options):
    if not options.output and not options.saved_model:
        raise UsageError("nothing to write: pass -o FILE.onnx and/or --saved-model DIR")
    if options.output and not str(options.output).endswith(".onnx"):
        raise UsageError(f"-o {options.output}: the ONNX output must end in .onnx")
    choices = {"layout": layouts.LAYOUTS, "input_dtype": ("float32", "uint8"),
               "flatten_order": heads.FLATTEN_ORDERS, "head": heads.HEADS,
               "normalize": heads.NORMALIZATIONS}
    for name, allowed in choices.items():
        if getattr(options, name) not in (*allowed, None):
            raise UsageError(f"--{name.replace('_', '-')} {getattr(options, name)!r}: expected "
                             f"one of {', '.join(allowed)}")
    if options.head == "none" and len(options.layers) > 1:
        raise UsageError("--head none keeps each layer's raw tensor, which cannot be joined; "
                         "use --head flatten/avg/max with several --layer options")


def prepare(options) -> Prepared:
    """Load the model, choose its layers and fix its input: everything but the conversion."""
    selectors = [cut.parse_selector(s) for s in options.layers]
    given = sources.resolve(options.source)
    side = _image_side(given, options) if given.kind == sources.HUB else None
    model, source, spec = (side.model, sources.hub_source(side, given.given), None) if side \
        else _load(options, given, selectors)
    layers = [_resolve(model, spec, s, side, options.head) for s in selectors]
    names = [layer.name for layer in layers]
    renamed = cut.make_names_scope_safe(model)
    layout = layouts.of_model(model)
    input_spec = _input_spec(model, layout, options)
    cut_model = fix_input_size(cut.cut(model, layers, side.tensors if side else None),
                               input_spec, layout)
    mode = options.preprocess or _default_mode(spec, side)
    models.preprocessing.check_mode(mode, input_spec.channels)
    if mode == "scale_offset" and not (side and side.converter):
        raise UsageError("--preprocess scale_offset takes its numbers from a KerasHub "
                         "ImageConverter, and this model has none; use caffe, tf, torch or none")
    for layer, shape in zip(layers, output_shapes(cut_model, layout)):
        heads.check(options.head, shape, layer.name, side.prefix_tokens if side else None)
    return Prepared(cut_model, source, names, input_spec, mode, spec, layout,
                    options.flatten_order or layout.flatten_order(), renamed, side)


def _default_mode(spec, side) -> str:
    if spec:
        return spec.preprocessing
    converter = side.converter if side else None
    if converter and (converter.scale or converter.offset):
        return "scale_offset"
    return "none"


def _image_side(given, options) -> hub.ImageSide:
    load.check_own_weights(options.weights, "a KerasHub preset or model")
    return hub.load(given.given)


def _load(options, given, selectors):
    spec = given.spec
    top = bool(spec) and cut.needs_top(spec, selectors)
    model, source = load.load(given, options.weights, top, options.input_size, options.seed,
                              options.unsafe)
    if spec and not top and not _all_found(model, selectors):
        # A layer of the top that the registry does not list (Keras names some automatically).
        model, source = load.load(given, options.weights, True, options.input_size,
                                  options.seed, options.unsafe)
    return model, source, spec


def _all_found(model, selectors):
    names = {layer.name for layer in model.layers}
    return all(s == RECOMMENDED or s in names for s in selectors if isinstance(s, str))


def _resolve(model, spec, selector, side=None, head=None):
    if side:
        return hub_cuts.resolve_layer(model, side, selector, head)
    if selector != RECOMMENDED:
        return cut.resolve(model, selector)
    if spec and spec.feature_layer:
        return model.get_layer(spec.feature_layer)
    if spec:
        return model.layers[-1]  # built without top: its output is the backbone's
    return cut.penultimate(model)


def _input_spec(model, layout, options) -> InputSpec:
    shape = layouts.single_input_shape(model)
    height, width, channels = layouts.image_size(shape, layout.input)
    onnx_layout = options.layout or layout.input
    if onnx_layout == "nhw" and channels != 1:
        raise UsageError(f"--layout nhw is for grayscale models; this one takes {channels} "
                         "channels: use nhwc or nchw")
    if options.input_size:
        fixed = (height, width)
        if None not in fixed and tuple(options.input_size) != fixed:
            raise UsageError(f"the model takes {height}x{width} images; --input-size "
                             f"{options.input_size[0]} {options.input_size[1]} does not fit it")
        height, width = options.input_size
    if height is None or width is None:
        raise LayerError(f"the model's input is {heads.format_shape(shape)} with unknown "
                         "height/width; pass --input-size H W")
    return InputSpec("images", int(height), int(width), int(channels), onnx_layout,
                     options.input_dtype, options.batch)


def fix_input_size(cut_model, spec: InputSpec, layout: layouts.ModelLayout):
    """Re-apply a model with unknown height/width to a fixed-size input, so shapes are known."""
    wanted = layouts.input_shape(spec.height, spec.width, spec.channels, layout.input)
    if tuple(cut_model.inputs[0].shape)[1:] == wanted:
        return cut_model
    keras_module = cut.keras_module(cut_model)
    fixed = keras_module.Input(shape=wanted)
    return keras_module.Model(fixed, cut_model(fixed), name=f"{cut_model.name}_fixed")


def output_shapes(cut_model, layout):
    """The cut model's output shapes, 4-D ones as channels-last (as the heads see them)."""
    shapes = cut_model.output_shape
    shapes = shapes if isinstance(shapes, list) else [shapes]
    return [layouts.shape_to_channels_last(s, layout) for s in shapes]


def make_contract(prepared: Prepared, options) -> Contract:
    dims = [heads.feature_dim(options.head, s)
            for s in output_shapes(prepared.cut_model, prepared.layout)]
    source, converter = prepared.source, prepared.converter
    scaling = converter if converter and prepared.mode == "scale_offset" else None
    return Contract(
        source=source.name, source_kind=source.kind, source_class=source.model_class,
        weights=source.weights,
        layers=prepared.layer_names, head=options.head, input=prepared.input_spec,
        preprocessing=prepared.mode, preprocessing_baked=options.bake_preprocessing,
        feature_dim=sum(dims), flatten_order=prepared.flatten_order, seed=source.seed,
        include_top=source.include_top, versions=_versions(prepared, options.opset),
        preprocessing_scale=scaling.scale if scaling else None,
        preprocessing_offset=scaling.offset if scaling else None,
        resize=converter.resize.to_dict() if converter and converter.image_size else None,
        normalize=options.normalize)


def _versions(prepared: Prepared, opset) -> dict:
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    versions = {"fexport": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
                "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "opset": opset}
    if prepared.source.loader == "tf_keras":
        import tf_keras

        versions["tf_keras"] = tf_keras.__version__
    if prepared.hub is not None:  # a KerasHub model, whichever way it came (preset or live)
        versions["keras_hub"] = hub.keras_hub().__version__
    return versions


def reference_for(prepared: Prepared, options) -> verification.Reference:
    converter = prepared.converter
    preprocess = verification.hub_preprocess(converter.layer) \
        if prepared.mode == "scale_offset" else \
        verification.keras_preprocess(prepared.mode, prepared.spec)
    return verification.Reference(prepared.cut_model, preprocess, options.head,
                                  prepared.flatten_order, prepared.layout,
                                  prepared.prefix_tokens or 0, options.normalize,
                                  converter.layer if converter and converter.image_size
                                  else None)


def _verify(proto, contract, prepared, options) -> VerificationReport:
    import onnxruntime as ort

    model = proto if isinstance(proto, str) else proto.SerializeToString()  # a path, or bytes
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return verification.verify(session, contract, reference_for(prepared, options),
                         options.verify_images, options.rtol, options.min_cosine)


def _failure_message(report: VerificationReport, written) -> str:
    worst = report.first_failure
    if worst.outcome == SHAPE_MISMATCH:
        what = f"shape {list(worst.onnx_shape)} but Keras gives {list(worst.keras_shape)}"
    else:
        what = (f"max rel error {worst.max_rel:.3g} (limit {report.max_rel_allowed:g}), min "
                f"cosine {worst.min_cosine:.6f} (limit {report.min_cosine_required:g})")
    kept = f"The files were kept for inspection: {', '.join(written)}. " if written else ""
    return f"verification failed on {worst.label}: {what}. {kept}{_advice(worst)}"


def _advice(check: CheckResult) -> str:
    if check.rounding_explains:
        return (f"Keras itself moves by max rel {check.noise_floor.max_rel:.3g} (min cosine "
                f"{check.noise_floor.min_cosine:.6f}) when its input moves by "
                f"{check.noise_floor.input_noise:g}: the difference is float32 rounding as this "
                "model amplifies it, not evidence of a conversion defect, but rounding this loud "
                "would also hide one. Verify with trained weights (--weights imagenet "
                "or PATH), or accept it with --rtol/--min-cosine.")
    return ("The difference is far beyond the model's own rounding sensitivity: please report "
            "the model and layer to fexport. Loosen --rtol/--min-cosine only if it is "
            "explained.")


def options_from_contract(contract, source=None, **overrides) -> ExportOptions:
    """The export options that rebuild the Keras side of an exported model."""
    weights = contract.weights if contract.source_kind == "registry" else "imagenet"
    options = ExportOptions(
        source=source or contract.source, layers=list(contract.layers), head=contract.head,
        weights=weights, input_size=(contract.input.height, contract.input.width),
        layout=contract.input.layout, input_dtype=contract.input.dtype,
        batch=contract.input.batch, preprocess=contract.preprocessing,
        bake_preprocessing=contract.preprocessing_baked, flatten_order=contract.flatten_order,
        seed=contract.seed if contract.seed is not None else 0, output="unused.onnx",
        normalize=contract.normalize)
    for name, value in overrides.items():
        setattr(options, name, value)
    return options


def reference_from_contract(contract, source=None, unsafe=False) -> verification.Reference:
    """Keras's side of an exported model, rebuilt from its contract (random weights from the
    recorded seed): what `verify` and `bench --compare-keras` compare against."""
    if contract.source_kind == "memory" and source is None:
        raise UsageError(f"this file was exported from an in-memory {contract.source_class} "
                         f"{contract.source!r}, which fexport cannot rebuild: save the model "
                         "(model.save('m.keras')) and pass --source m.keras")
    if contract.source_kind not in ("registry", "file", "memory", "preset"):
        raise UsageError("this ONNX file was not exported by fexport, so there is no Keras "
                         "model to compare it with")
    options = options_from_contract(contract, source, unsafe=unsafe)
    return reference_for(prepare(options), options)


def verify_file(path, source=None, verify_images=(), rtol=None, min_cosine=None,
                unsafe=False) -> VerificationReport:
    """Re-run verification of an exported ONNX file against Keras, rebuilt from its contract."""
    from fexport.runtime.backends.onnxruntime_backend import open_session
    from fexport.runtime.contract import read_contract

    session = open_session(path, "cpu")  # the reference engine, as at export time
    contract = read_contract(path)
    return verification.verify(
        session, contract, reference_from_contract(contract, source, unsafe),
        list(verify_images),
        EXPORT_MAX_REL if rtol is None else rtol,
        EXPORT_MIN_COSINE if min_cosine is None else min_cosine)
