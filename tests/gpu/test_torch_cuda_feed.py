"""torch's CUDA feed: pinned host buffers, copy of batch n+1 overlapping compute of batch n, the CPU's numbers.
Run on a machine with an NVIDIA GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference.torch_backend import TorchBackend
from catalogue_tagger.inference_loop import InferenceLoop
from catalogue_tagger.messages import Message, SegmentReady, TrackDecoded, TrackStarted
from catalogue_tagger.records import TrackResult

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _messages(model: str, window: int, tracks: int = 6, segments: int = 7) -> list[Message]:
    rng = np.random.default_rng(1)
    messages: list[Message] = [TrackStarted(t, f"file:///{t}.mp3") for t in range(tracks)]
    for index in range(segments):
        for track in range(tracks):
            samples = (rng.standard_normal(window) * 0.1).astype(np.float32)
            messages.append(SegmentReady(track, model, index, samples))
    messages += [TrackDecoded(t, f"file:///{t}.mp3", {model: segments}, 21.0, ()) for t in range(tracks)]
    return messages


def _means(backend: TorchBackend, messages: list[Message]) -> dict[int, np.ndarray]:
    loop = InferenceLoop({backend.spec.name: backend}, batch_size=8)
    done = loop.feed_all(messages) + loop.flush()
    assert all(isinstance(d, TrackResult) for d in done) and loop.segments_scored == 42
    return {d.track_id: d.outputs[0].mean for d in done if isinstance(d, TrackResult)}


def test_the_cuda_feed_gives_the_cpu_scores() -> None:
    cpu, gpu = TorchBackend("musicnn-mtt", "cpu"), TorchBackend("musicnn-mtt", "cuda")
    with cpu, gpu:
        assert gpu.in_flight == 1
        messages = _messages("musicnn-mtt", cpu.spec.window)
        expected, got = _means(cpu, messages), _means(gpu, messages)
    assert expected.keys() == got.keys()
    for track in expected:
        np.testing.assert_allclose(got[track], expected[track], atol=1e-4)


def test_host_buffers_are_pinned_and_reused() -> None:
    with TorchBackend("musicnn-mtt", "cuda") as gpu:
        first = gpu.host_buffer(8)
        assert torch.from_numpy(first).is_pinned()
        first[:] = 0.01
        outputs = gpu.submit(first).result()
        assert outputs["probs"].shape == (8, gpu.spec.n_labels)
        pointers = {gpu.host_buffer(8).ctypes.data for _ in range(3)}
        assert first.ctypes.data in pointers  # its copy finished: the buffer is lent again


def test_tf32_is_off_once_a_cuda_backend_opened() -> None:
    with TorchBackend("musicnn-mtt", "cuda"):
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        if hasattr(matmul, "fp32_precision"):
            assert (matmul.fp32_precision, getattr(cudnn, "conv").fp32_precision) == ("ieee", "ieee")
        else:
            assert not matmul.allow_tf32 and not cudnn.allow_tf32


def test_the_device_index_is_honoured() -> None:
    count = torch.cuda.device_count()
    with pytest.raises(BackendUnavailable, match=f"sees {count} CUDA device"):
        TorchBackend("musicnn-mtt", f"cuda:{count}")
    last = f"cuda:{count - 1}"
    gpu = TorchBackend("musicnn-mtt", last)
    with gpu:
        assert next(gpu.model.parameters()).device == torch.device(last)
        buffer = gpu.host_buffer(2)
        buffer[:] = 0.01
        assert np.isfinite(gpu.submit(buffer).result()["probs"]).all()
