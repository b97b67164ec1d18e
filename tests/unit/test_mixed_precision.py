"""The fp16/bf16 graphs: what stays float32, what is reduced, and how far fp16 moves the tags (ONNX Runtime, CPU)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import av
import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from catalogue_tagger.config import Settings
from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference import open_backend
from catalogue_tagger.inference.compile import FRONT_END_PREFIX, onnx_path_for, reduced_onnx
from catalogue_tagger.inference.mixed_precision import first_layers
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.segment import Windowing, segment_track

FIXTURES = Path(__file__).parents[1] / "fixtures" / "musicnn"
CLIPS = sorted(json.loads((FIXTURES / "clips.json").read_text())["clips"])
MODELS = ["musicnn-mtt", "musicnn-msd", "vgg-mtt", "vgg-msd", "samplecnn-mtt", "musicnn-sota-mtt", "fcn-mtt",
          "crnn-mtt"]
FP16_TOLERANCE = 2e-3  # tag probabilities, fp16 graph against the fp32 graph


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@cache
def read_flac(clip: str) -> np.ndarray:
    """Samples as ``int16 / 32768`` in float32, the reference's reading of its inputs."""
    with av.open(str(FIXTURES / f"{clip}.flac")) as container:
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])
    return samples.astype(np.float32) / 32768


def _types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    return types | {init.name: init.data_type for init in graph.initializer}


@pytest.mark.parametrize("model", MODELS)
def test_fp16_graph_agrees_with_fp32_on_the_reference_clips(model: str, engine_dir: Path) -> None:
    spec = get_spec(model)
    windowing = Windowing(spec.window, spec.hop, spec.pad)
    fp32 = Settings(backend="onnx", precision="fp32", engine_cache=engine_dir, workers=0)
    with open_backend(model, fp32) as full, open_backend(model, replace(fp32, precision="fp16")) as half:
        worst = 0.0
        for clip in CLIPS:
            windows, _ = segment_track(read_flac(clip), windowing)
            expected, got = full.run(windows), half.run(windows)
            assert {name: a.dtype for name, a in got.items()} == {name: np.float32 for name in spec.output_names}
            assert all(np.isfinite(a).all() for a in got.values())
            worst = max(worst, float(np.abs(got["probs"] - expected["probs"]).max()))
    assert worst <= FP16_TOLERANCE, f"{model}: fp16 moved a tag probability by {worst:.2e}"


@pytest.mark.parametrize(("model", "precision"), [("musicnn-mtt", "fp16"), ("fcn-mtt", "bf16"),
                                                   ("samplecnn-mtt", "fp16")])
def test_the_front_end_and_every_shape_tensor_keep_their_types(model: str, precision: str, engine_dir: Path) -> None:
    exported = onnx.load(str(onnx_path_for(model, engine_dir)))
    reduced = reduced_onnx(exported, precision)
    before, after = _types(exported), _types(reduced)
    reduced_type = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}[precision]
    front_end = [node for node in reduced.graph.node if node.name.startswith(FRONT_END_PREFIX)]
    assert [n.name for n in front_end] == [n.name for n in exported.graph.node if n.name.startswith(FRONT_END_PREFIX)]
    for node in front_end:  # every front-end tensor is what it was: float32 (and its own float16 rounding)
        assert all(after[name] == before[name] for name in node.output)
    for name, elem in before.items():  # integer tensors (shapes, indices, pads) are never touched
        if elem not in (TensorProto.FLOAT, TensorProto.FLOAT16) and name in after:
            assert after[name] == elem, name
    assert [(o.name, o.type.tensor_type.elem_type) for o in reduced.graph.output] == [
        (name, TensorProto.FLOAT) for name in get_spec(model).output_names]
    assert reduced.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    weights = [init for init in reduced.graph.initializer if init.data_type in (TensorProto.FLOAT, reduced_type)]
    assert sum(init.data_type == reduced_type for init in weights) > len(weights) / 2


def test_first_layer_weights_are_split_into_a_high_and_a_low_part(engine_dir: Path) -> None:
    exported = onnx.load(str(onnx_path_for("vgg-msd", engine_dir)))
    graph = onnx.shape_inference.infer_shapes(exported).graph
    [first] = first_layers(graph, _types(exported), FRONT_END_PREFIX)
    weight_name = graph.node[first].input[1]
    weight = numpy_helper.to_array(next(i for i in graph.initializer if i.name == weight_name))
    reduced = {i.name: numpy_helper.to_array(i) for i in reduced_onnx(exported, "fp16").graph.initializer}
    high, low = reduced[f"{weight_name}_hi"], reduced[f"{weight_name}_lo"]
    assert high.dtype == low.dtype == np.float16 and weight_name not in reduced
    plain = np.abs(weight.astype(np.float16).astype(np.float32) - weight).max()
    split = np.abs(high.astype(np.float32) + low.astype(np.float32) - weight).max()
    assert split < plain / 100


def test_bf16_graph_is_valid_onnx_and_runs_where_onnx_runtime_can(engine_dir: Path) -> None:
    path = onnx_path_for("samplecnn-mtt", engine_dir, "bf16")
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.opset_import[0].version >= 22  # bfloat16 Conv and MaxPool
    settings = Settings(backend="onnx", precision="bf16", engine_cache=engine_dir, workers=0)
    try:
        backend = open_backend("samplecnn-mtt", settings)
    except BackendUnavailable as exc:  # ONNX Runtime's CPU provider has no bfloat16 kernels
        assert "bf16" in str(exc)
        return
    with backend, open_backend("samplecnn-mtt", replace(settings, precision="fp32")) as full:
        windows, _ = segment_track(read_flac(CLIPS[0]), Windowing(59049, 59049, 0))
        np.testing.assert_allclose(backend.run(windows)["probs"], full.run(windows)["probs"], atol=2e-2)
