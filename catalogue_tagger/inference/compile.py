"""Build steps: export a tagger to ONNX, rewrite it in fp16/bf16, build a TensorRT engine from that graph.

Building is separate from running: the TensorRT runtime (``tensorrt_backend``) only deserializes engines
made here (``catalogue-tagger compile``). Every artifact is cached in the engine cache folder (setting
``engine_cache``), named by what invalidates it (:mod:`engine_cache`).

Precision lives in the graph, not in builder flags: TensorRT 11 builds only strongly typed networks, and
10.x (≥ 10.8) does the same when asked with ``STRONGLY_TYPED``, so one build path serves both. An fp16 or
bf16 engine is built from the fp16/bf16 ONNX graph of :mod:`mixed_precision` (front end float32, network
reduced, outputs float32); an fp32 engine from the exported graph with TF32 cleared, which would otherwise
round every matmul and convolution input to 10 mantissa bits and break the 1e-4 parity with the reference.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from catalogue_tagger.config import PRECISIONS
from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference import engine_cache
from catalogue_tagger.inference.device import cuda_index
from catalogue_tagger.models.specs import get_spec

if TYPE_CHECKING:
    import onnx
    import tensorrt as trt

# ``onnx`` (with ml_dtypes, ~0.5 s to import) and torch (~0.8 s) are imported by the steps that build a graph, not
# here: a run that opens graphs already built (every ONNX Runtime run after the first) loads neither.

logger = logging.getLogger(__name__)

OPSET = 17
# bfloat16 Conv and MaxPool enter the ONNX standard at opset 22; fp32, fp16 and int8 (QDQ) graphs stay at OPSET
OPSETS = {"fp32": OPSET, "fp16": OPSET, "bf16": 22, "int8": OPSET}
FRONT_END_PREFIX = "/frontend/"  # ONNX node names of the log-mel front end (torch module path)
WORKSPACE_BYTES = 4 << 30

# ONNX ops the exported taggers may use; each has a TensorRT importer (TensorRT ONNX operator support
# matrix). A test exports every model and checks its graphs (fp32 and reduced) against this list.
TENSORRT_OPS = frozenset(
    {
        "Add", "Cast", "Concat", "Constant", "Conv", "Div", "Flatten", "Gemm", "Identity", "Log", "MatMul",
        "Max", "MaxPool", "Mul", "Pad", "Pow", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid",
        "Slice", "Split", "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Gather", "BatchNormalization",
        "Expand", "ConstantOfShape", "Unfold", "Tile", "Where", "Equal", "Range", "Tanh",
    }
)


def export_onnx(model: str, path: Path, opset: int = OPSET, batch: int = 2) -> Path:
    """Export ``model`` (waveform in, ``spec.output_names`` out) with a dynamic batch axis, in float32."""
    import torch

    from catalogue_tagger.models.registry import load_model

    spec = get_spec(model)
    net = load_model(model, device="cpu")
    example = torch.zeros(batch, spec.window)
    dynamic = {name: {0: "batch"} for name in ("wave", *spec.output_names)}
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["wave"],
        output_names=list(spec.output_names),
        dynamic_axes=dynamic,
        opset_version=opset,
        dynamo=False,
    )
    return path


def reduced_onnx(fp32_graph: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """The fp16 or bf16 graph of an exported float32 graph (see :mod:`mixed_precision`)."""
    from onnx import version_converter

    from catalogue_tagger.inference.mixed_precision import reduce_precision

    opset = OPSETS[precision]
    if fp32_graph.opset_import[0].version != opset:
        fp32_graph = version_converter.convert_version(fp32_graph, opset)
    return reduce_precision(fp32_graph, precision, FRONT_END_PREFIX)


def onnx_artifact(model: str, cache: Path, precision: str) -> Path:
    """Where the ONNX graph of ``model`` in ``precision`` lives in ``cache`` (whether or not it is built)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    name = engine_cache.onnx_name(model, get_spec(model).weights_sha256, precision, OPSETS[precision])
    return engine_cache.artifact_path(cache, name)


def onnx_path_for(model: str, cache: Path, precision: str = "fp32") -> Path:
    """The cached ONNX graph of ``model`` in ``precision`` in ``cache``, made on first use (graphs are cheap:
    seconds on a CPU). The fp16/bf16 graphs are made from the cached float32 export. The int8 graph needs music
    to calibrate on, so only ``compile`` makes it (:func:`compile_int8`); here a missing one is an error."""
    path = onnx_artifact(model, cache, precision)
    if precision == "int8":
        if not path.exists():
            raise BackendUnavailable(
                f"{model}: no int8 graph in {cache}; build it with `catalogue-tagger compile --model {model} "
                "--precision int8 --calibration DIR` (DIR: real music to calibrate on)")
        return path

    def build(tmp: Path) -> None:
        if precision == "fp32":
            export_onnx(model, tmp, OPSETS["fp32"])
        else:
            import onnx

            fp32_graph = onnx.load(str(onnx_path_for(model, cache, "fp32")))
            onnx.save(reduced_onnx(fp32_graph, precision), str(tmp))

    return engine_cache.get_or_build(path, build)


def compile_int8(model: str, cache: Path, calibration_dir: Path) -> Path:
    """The static int8 graph of ``model`` calibrated on the music of ``calibration_dir`` (see :mod:`quantize`),
    with its provenance beside it (``….onnx.json``). Built again only when the calibration set changed."""
    from catalogue_tagger.inference import quantize

    path = onnx_artifact(model, cache, "int8")
    files = quantize.calibration_files(calibration_dir)
    windows = quantize.calibration_windows(model, files)
    record = quantize.provenance(files, windows)
    sidecar = path.with_name(path.name + ".json")
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text()).get("calibration_sha256") == \
            record["calibration_sha256"]:
        return path
    fp32_path = onnx_path_for(model, cache, "fp32")
    path.unlink(missing_ok=True)
    engine_cache.get_or_build(path, lambda tmp: quantize.quantize_int8(fp32_path, tmp, windows, FRONT_END_PREFIX))
    sidecar.write_text(json.dumps(record, indent=1))
    logger.info("%s: int8 graph calibrated on %d windows of %d tracks", model, len(windows), len(files))
    return path


def engine_path_for(model: str, cache: Path, precision: str, max_batch: int, device: str = "cuda") -> Path:
    """Where the TensorRT engine of ``model`` for this precision, max batch, TensorRT and GPU lives in ``cache``."""
    return engine_cache.engine_path(cache, model, get_spec(model).weights_sha256, precision, max_batch, device)


def build_engine(
    onnx_path: Path, engine_path: Path, window: int, max_batch: int, opt_batch: int | None = None,
    device: str = "cuda",
) -> None:
    """ONNX → strongly typed TensorRT network → serialized engine, on ``device``.

    One optimization profile (``engine_cache.PROFILES``): batch 1 to ``max_batch``, tuned for ``opt_batch`` (default:
    ``max_batch``, the batch the pipeline runs). The precision is the graph's own.
    """
    import tensorrt as trt
    import torch

    opt = max_batch if opt_batch is None else min(max(1, opt_batch), max_batch)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    with torch.cuda.device(cuda_index(device)):
        builder = trt.Builder(trt_logger)
        # 10.x: precision from the graph's types only; 11.x: always so (the flag is accepted and ignored)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, trt_logger)
        if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"TensorRT could not parse {onnx_path.name}: {errors}")
        _check_io(network, onnx_path.name)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        _clear_tf32(config)
        profile = builder.create_optimization_profile()
        profile.set_shape("wave", (1, window), (opt, window), (max_batch, window))
        index = config.add_optimization_profile(profile)
        if index != engine_cache.PROFILES["batch"]:
            raise BackendUnavailable(f"{onnx_path.name}: optimization profile got index {index}, expected "
                                     f"{engine_cache.PROFILES['batch']}")
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable(f"TensorRT failed to build an engine from {onnx_path.name}")
    engine_path.write_bytes(bytes(serialized))


def _check_io(network: "trt.INetworkDefinition", name: str) -> None:
    """The network reads float32 ``wave`` and writes float32 outputs, whatever precision runs inside."""
    import tensorrt as trt

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    for role, tensors in (("input", inputs), ("output", outputs)):
        for tensor in tensors:
            logger.info("%s: %s %s %s %s", name, role, tensor.name, tensor.dtype, tensor.shape)
            if tensor.dtype != trt.float32:
                raise BackendUnavailable(f"{name}: {role} {tensor.name} is {tensor.dtype}, expected float32")
    if [t.name for t in inputs] != ["wave"]:
        raise BackendUnavailable(f"{name}: inputs {[t.name for t in inputs]}, expected ['wave']")


def _clear_tf32(config: "trt.IBuilderConfig") -> None:
    """No TF32 math in float32 layers (on by default): the front end's DFT and fp32 engines need true float32."""
    import tensorrt as trt

    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None:
        config.clear_flag(tf32)


def compile_model(model: str, cache: Path, precision: str, max_batch: int, device: str = "cuda") -> Path:
    """Every artifact of ``model`` for ``precision``: the float32 ONNX export, its fp16/bf16 graph, and the
    TensorRT engine built on ``device`` for batches up to ``max_batch`` (each cached); returns the engine."""
    if precision == "int8":
        raise BackendUnavailable(f"{model}: no TensorRT int8 engine: int8 graphs are ONNX Runtime's (uint8 "
                                 "activations with zero points, which TensorRT does not take); use the onnx backend")
    spec = get_spec(model)
    onnx_path = onnx_path_for(model, cache, precision)
    engine_path = engine_path_for(model, cache, precision, max_batch, device)
    return engine_cache.get_or_build(
        engine_path, lambda tmp: build_engine(onnx_path, tmp, spec.window, max_batch, max_batch, device)
    )
