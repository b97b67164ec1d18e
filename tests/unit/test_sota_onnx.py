"""The sota MTAT taggers exported to ONNX (opset 17, dynamic batch) give torch's numbers on a real clip."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
import pytest
import torch

from catalogue_tagger.inference.compile import export_onnx
from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.segment import Windowing, segment_track

CLIP = Path(__file__).parents[1] / "fixtures" / "musicnn" / "pub_electronic_2.flac"


def read_clip() -> np.ndarray:
    with av.open(str(CLIP)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return samples.astype(np.float32) / 32768


@pytest.mark.parametrize("name", ["musicnn-sota-mtt", "fcn-mtt", "crnn-mtt"])
def test_onnx_runtime_matches_torch_on_a_clip(name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    windows, _ = segment_track(read_clip(), Windowing(spec.window, spec.hop, spec.pad))
    path = export_onnx(name, tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(spec.output_names), {"wave": windows})
    with torch.no_grad():
        want = [t.numpy() for t in load_model(name)(torch.from_numpy(windows))]
    assert np.abs(got[0] - want[0]).max() <= 1e-4
    assert np.abs(got[0].mean(axis=0) - want[0].mean(axis=0)).max() <= 1e-4
    assert np.abs(got[1] - want[1]).max() <= 1e-3
    if spec.embedding_size:
        assert np.abs(got[2] - want[2]).max() <= 1e-3
