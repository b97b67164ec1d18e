"""The taggers export to ONNX (opset 17, dynamic batch) as graphs TensorRT can build, and run the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from catalogue_tagger.models.registry import load_model

# ONNX ops with TensorRT importers that the spectrogram taggers are expected to use
ALLOWED_OPS = {
    "Add", "Cast", "Concat", "Constant", "Conv", "Div", "Flatten", "Gather", "Gemm", "Log", "MatMul", "MaxPool",
    "Mul", "Pad", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Sub",
    "Transpose", "Unsqueeze", "Squeeze", "Sqrt", "Reciprocal", "Concat", "ConstantOfShape", "Identity",
    "Max", "Tanh",  # the sota taggers: AmplitudeToDB's floor, the CRNN's unrolled GRU
}


def export(name: str, path: Path) -> list[str]:
    tagger = load_model(name)
    outputs = list(tagger.spec.output_names)
    torch.onnx.export(
        tagger, (torch.zeros(2, tagger.spec.window),), str(path), input_names=["wave"], output_names=outputs,
        dynamic_axes={n: {0: "batch"} for n in ("wave", *outputs)}, opset_version=17, dynamo=False,
    )
    return outputs


@pytest.mark.parametrize("name", ["musicnn-mtt", "vgg-msd", "musicnn-sota-mtt", "fcn-mtt", "crnn-mtt"])
def test_onnx_export_matches_torch(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.onnx"
    outputs = export(name, path)
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    if name in ("musicnn-mtt", "vgg-msd"):
        assert "Cast" in ops  # musicnn's float16 rounding of the mel power survives the export
    assert not ops & {"STFT", "DFT", "GRU", "Loop", "Scan"}

    rng = np.random.default_rng(1)
    window = load_model(name).spec.window
    wave = (0.3 * rng.standard_normal((3, window))).astype(np.float32)  # batch 3: not the export batch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {"wave": wave})
    with torch.no_grad():
        want = [t.numpy() for t in load_model(name)(torch.from_numpy(wave))]
    assert np.abs(got[0] - want[0]).max() <= 1e-4
    if len(outputs) == 3:
        assert np.abs(got[2] - want[2]).max() <= 1e-3
