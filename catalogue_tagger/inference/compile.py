"""Build steps: export a tagger to ONNX, and build a TensorRT engine from that ONNX graph.

Building is separate from running: the TensorRT runtime (``tensorrt_backend``) only deserializes engines
made here. Both artifacts are cached in the engine cache folder (setting ``engine_cache``), named by what
invalidates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference import engine_cache
from catalogue_tagger.models.registry import get_spec, load_model

if TYPE_CHECKING:
    import tensorrt as trt

OPSET = 17
FRONT_END_PREFIX = "/frontend/"  # ONNX node names of the log-mel front end (torch module path)

# ONNX ops the exported taggers may use; each has a TensorRT importer (TensorRT ONNX operator support
# matrix). A test exports every model and checks its graph against this list.
TENSORRT_OPS = frozenset(
    {
        "Add", "Cast", "Concat", "Constant", "Conv", "Div", "Flatten", "Gemm", "Identity", "Log", "MatMul",
        "Max", "MaxPool", "Mul", "Pad", "Pow", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid",
        "Slice", "Split", "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Gather", "BatchNormalization",
        "Expand", "ConstantOfShape", "Unfold", "Tile", "Where", "Equal", "Range", "Tanh",
    }
)


def export_onnx(model: str, path: Path, opset: int = OPSET, batch: int = 2) -> Path:
    """Export ``model`` (waveform in, ``spec.output_names`` out) with a dynamic batch axis."""
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


def onnx_path_for(model: str, cache: Path, opset: int = OPSET) -> Path:
    """The cached ONNX export of ``model`` in ``cache``, exported on first use (exports are cheap)."""
    spec = get_spec(model)
    path = engine_cache.artifact_path(cache, engine_cache.onnx_name(model, spec.weights_sha256, opset))

    def build(tmp: Path) -> None:
        export_onnx(model, tmp, opset)

    return engine_cache.get_or_build(path, build)


def _tensorrt_identity() -> tuple[str, str]:
    """TensorRT version and the GPU's compute capability; raises when either is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable("TensorRT is not installed (pip install tensorrt on a CUDA machine)") from exc
    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT needs a CUDA device; none is visible")
    major, minor = torch.cuda.get_device_capability()
    return trt.__version__, f"{major}{minor}"


def engine_path_for(model: str, cache: Path, precision: str, max_batch: int) -> Path:
    """Where the TensorRT engine of ``model`` for this precision, max batch, TensorRT and GPU lives in ``cache``."""
    spec = get_spec(model)
    version, capability = _tensorrt_identity()
    name = engine_cache.engine_name(model, spec.weights_sha256, precision, max_batch, version, capability)
    return engine_cache.artifact_path(cache, name)


def build_engine(onnx_path: Path, engine_path: Path, window: int, precision: str, max_batch: int) -> None:
    """ONNX → TensorRT network → serialized engine, one optimization profile for batch 1..max_batch."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_front_end_fp32(network, config)
    elif precision != "fp32":
        raise ValueError(f"precision must be fp16 or fp32, not {precision!r}")
    profile = builder.create_optimization_profile()
    profile.set_shape("wave", (1, window), (max(1, max_batch // 2), window), (max_batch, window))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable(f"TensorRT failed to build an engine from {onnx_path.name}")
    engine_path.write_bytes(bytes(serialized))


def _keep_front_end_fp32(network: "trt.INetworkDefinition", config: "trt.IBuilderConfig") -> None:
    """The STFT-as-matmul and mel projection stay float32 in an fp16 engine.

    The front end's float16 rounding of the mel power is part of the model; computing the power itself in
    half precision would move the log-mel by far more than one float16 step.
    """
    import tensorrt as trt

    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name.startswith(FRONT_END_PREFIX) and layer.type != trt.LayerType.CAST:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)


def compile_model(model: str, cache: Path, precision: str, max_batch: int) -> Path:
    """Export (cached) and build (cached) the TensorRT engine of ``model``; returns the engine path."""
    spec = get_spec(model)
    onnx_path = onnx_path_for(model, cache)
    engine_path = engine_path_for(model, cache, precision, max_batch)
    return engine_cache.get_or_build(
        engine_path, lambda tmp: build_engine(onnx_path, tmp, spec.window, precision, max_batch)
    )
