"""SampleCNN: Lee et al.'s 3^9 network (59049 samples in, ~1.9 M parameters), exportable like the other taggers."""

from __future__ import annotations

import copy
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from catalogue_tagger.inference.compile import TENSORRT_OPS
from catalogue_tagger.models.labels import MTT_LABELS
from catalogue_tagger.models.registry import WEIGHTS_DIR, build_model, load_model
from catalogue_tagger.models.samplecnn import (
    WINDOW,
    ChannelsLastFeatures,
    WaveformTagger,
    build,
    conv3_winograd,
    train_features_channels_last,
)
from catalogue_tagger.models.specs import SPECS, samplecnn_spec
from catalogue_tagger.models.winograd import transformed_kernels
from catalogue_tagger.segment import Windowing, segment_track


@pytest.fixture(scope="module")
def tagger() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(samplecnn_spec("samplecnn-test", MTT_LABELS))
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():  # non-trivial batch-norm statistics, so export must carry them
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def test_spec_and_parameter_count(tagger: torch.nn.Module) -> None:
    spec = tagger.spec
    assert (spec.kind, spec.architecture, spec.window, spec.hop, spec.pad) == ("waveform", "samplecnn", 59049, 59049, 0)
    assert WINDOW == 3**10 and spec.labels == MTT_LABELS and spec.output_names == ("probs", "logits", "embedding")
    n_params = sum(p.numel() for p in tagger.parameters())
    assert 1_800_000 <= n_params <= 2_000_000, n_params


def test_forward_shapes_and_sigmoid(tagger: torch.nn.Module) -> None:
    with torch.no_grad():
        probs, logits, embedding = tagger(0.1 * torch.randn(3, WINDOW))
    assert probs.shape == logits.shape == (3, 50) and embedding.shape == (3, 512)
    torch.testing.assert_close(probs, torch.sigmoid(logits))


def test_segmenter_gives_whole_windows() -> None:
    spec = samplecnn_spec("samplecnn-test", MTT_LABELS)
    windows, padded = segment_track(np.ones(3 * WINDOW + 100, np.float32), Windowing(spec.window, spec.hop, spec.pad))
    assert windows.shape == (3, WINDOW) and not padded
    windows, padded = segment_track(np.ones(1000, np.float32), Windowing(spec.window, spec.hop, spec.pad))
    assert windows.shape == (1, WINDOW) and padded and windows[0, 1000:].max() == 0.0


def test_onnx_export_matches_torch_with_tensorrt_ops(tagger: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "samplecnn.onnx"
    names = list(tagger.spec.output_names)
    torch.onnx.export(tagger, (torch.zeros(2, WINDOW),), str(path), input_names=["wave"], output_names=names,
                      dynamic_axes={n: {0: "batch"} for n in ("wave", *names)}, opset_version=17, dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops <= TENSORRT_OPS, ops - TENSORRT_OPS
    wave = (0.3 * np.random.default_rng(2).standard_normal((3, WINDOW))).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(names, {"wave": wave})
    with torch.no_grad():
        want = [t.numpy() for t in tagger(torch.from_numpy(wave))]
    assert np.abs(got[0] - want[0]).max() <= 1e-4
    assert np.abs(got[2] - want[2]).max() <= 1e-4 * max(1.0, float(np.abs(want[2]).max()))


def test_registry_builds_samplecnn_and_loads_the_shipped_weights() -> None:
    spec = samplecnn_spec("samplecnn-test", MTT_LABELS)
    assert type(build_model(spec)).__name__ == "WaveformTagger"
    assert (WEIGHTS_DIR / SPECS["samplecnn-mtt"].weights_file).exists()
    shipped = load_model("samplecnn-mtt")  # pinned hash, strict state dict
    assert shipped.spec.kind == "waveform" and not shipped.training


def test_projected_embedding_exports_like_the_rest(tmp_path: Path) -> None:
    """With a projection the embedding output is the 200-d projection of the pooled feature, in the ONNX graph too."""
    torch.manual_seed(0)
    model = build(samplecnn_spec("samplecnn-test", MTT_LABELS, embedding_size=200)).eval()
    wave = (0.3 * np.random.default_rng(3).standard_normal((2, WINDOW))).astype(np.float32)
    with torch.no_grad():
        probs, _, embedding = model(torch.from_numpy(wave))
        pooled = model.net.embed(torch.from_numpy(wave))
    projection = model.net.projection
    assert projection is not None and embedding.shape == (2, 200) and probs.shape == (2, 50)
    torch.testing.assert_close(embedding, projection(pooled))
    path = tmp_path / "projected.onnx"
    names = list(model.spec.output_names)
    torch.onnx.export(model, (torch.zeros(2, WINDOW),), str(path), input_names=["wave"], output_names=names,
                      dynamic_axes={n: {0: "batch"} for n in ("wave", *names)}, opset_version=17, dynamo=False)
    assert {node.op_type for node in onnx.load(str(path)).graph.node} <= TENSORRT_OPS
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(names, {"wave": wave})
    assert got[2].shape == (2, 200)
    assert np.abs(got[2] - embedding.numpy()).max() <= 1e-4 * max(1.0, float(np.abs(embedding.numpy()).max()))


def test_channels_last_features_compute_what_the_folded_network_does() -> None:
    """The CPU inference network (activations channels-last, first layer a matrix product, pool before ReLU)
    gives the shipped tagger's outputs; and it refuses a network whose BN is not folded."""
    shipped = load_model("samplecnn-mtt").eval()
    fast = load_model("samplecnn-mtt").eval().for_cpu_inference()
    assert isinstance(fast, WaveformTagger)
    assert isinstance(fast.net.features, ChannelsLastFeatures)
    wave = torch.from_numpy((np.random.default_rng(3).standard_normal((3, WINDOW)) * 0.1).astype(np.float32))
    with torch.inference_mode():
        for want, got in zip(shipped(wave), fast(wave)):
            assert got.shape == want.shape
            assert float((got - want).abs().max()) <= 1e-4
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = fast(wave)[0]
    assert 0 < float((reduced.float() - shipped(wave)[0]).abs().max()) <= 0.02  # really bfloat16, and close
    with pytest.raises(ValueError, match="fold the BN"):
        ChannelsLastFeatures(load_model("samplecnn-mtt").net.features)


def test_training_on_cpu_runs_channels_last_with_the_same_values_gradients_and_statistics() -> None:
    """In training mode on a CPU the features run channels-last (:func:`train_features_channels_last`): in
    float64, the same features, parameter gradients and BN running statistics as the ``[N, C, L]`` layers."""
    torch.manual_seed(0)
    fast = build(samplecnn_spec("samplecnn-test", MTT_LABELS)).double().train()
    plain = copy.deepcopy(fast)
    generator = torch.Generator().manual_seed(2)
    wave = torch.randn(3, WINDOW, generator=generator, dtype=torch.float64)
    weights = torch.randn(3, 512, generator=generator, dtype=torch.float64)
    with mock.patch("catalogue_tagger.models.samplecnn.train_features_channels_last",
                    wraps=train_features_channels_last) as channels_last:
        got = fast.net.embed(wave)
    assert channels_last.call_count == 1
    want = plain.net.features(wave.unsqueeze(1)).flatten(1)
    assert got.shape == want.shape == (3, 512)
    assert float((got - want).abs().max()) <= 1e-10
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        if b.grad is not None:
            assert a.grad is not None and float((a.grad - b.grad).abs().max()) <= 1e-9 * float(b.grad.abs().max()), name
    for (name, a), b in zip(fast.named_buffers(), plain.buffers()):
        assert torch.allclose(a, b, rtol=1e-10, atol=0), name  # running mean/var, batches tracked
    assert any(int(b) == 1 for name, b in fast.named_buffers() if name.endswith("num_batches_tracked"))


@pytest.mark.parametrize(("length", "pool", "with_bias"), [(6561, 3, True), (1000, 3, True), (13, 1, False), (2, 1, True)])
def test_winograd_convolution_is_conv1d_and_max_pool(length: int, pool: int, with_bias: bool) -> None:
    """SampleCNN's float32 CPU path: F(4, 3) along the samples, pooled per group of runs, is ``conv1d(padding=1)``
    then ``max_pool1d(pool)``, to float32 rounding, at lengths that do not fill the last run or pool window."""
    generator = torch.Generator().manual_seed(length)
    y = torch.randn(2, length, 16, generator=generator)  # channels-last
    weight = 0.2 * torch.randn(24, 16, 3, generator=generator)
    bias = torch.randn(24, generator=generator) if with_bias else None
    expected = torch.nn.functional.conv1d(y.transpose(1, 2).double(), weight.double(),
                                          None if bias is None else bias.double(), padding=1)
    if pool > 1:
        expected = torch.nn.functional.max_pool1d(expected, pool)
    got = conv3_winograd(y, transformed_kernels(weight, 4), bias, pool)
    assert got.shape == (2, length // pool, 24)
    assert float((got.double() - expected.transpose(1, 2)).abs().max()) <= 2e-5  # |y| up to ~10
