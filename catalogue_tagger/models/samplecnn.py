"""SampleCNN (Lee et al., 2017): a sample-level waveform tagger, 3^9 model, 59049 samples in.

A strided conv (kernel 3, stride 3) turns the waveform into 19683 frames of 128 channels; nine blocks of
conv3 (padding 1) + BN + ReLU + max-pool 3 bring the length down to 1 while the channels grow
128, 128, 256, 256, 256, 256, 256, 256, 512; a 1x1 conv (512) + BN + ReLU gives the 512-d embedding, then
dropout and a linear layer to the tags. Optionally a linear projection of that 512-d feature (trained to predict
a teacher's embedding, e.g. musicnn's 200-d penultimate layer) is the embedding the tagger outputs instead, so
similarity and heads read a space shaped like the teacher's. About 1.9 M parameters; every op exports to ONNX with a TensorRT
importer (Conv, BatchNormalization, Relu, MaxPool, Flatten/Reshape, Gemm, Sigmoid).
"""

from __future__ import annotations

import torch
from torch import nn

from catalogue_tagger.models.base import ModelSpec, Tagger

WINDOW = 3**10  # 59049 samples, ~3.69 s at 16 kHz
BLOCK_CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)
EMBEDDING_SIZE = 512  # the pooled feature; the tagger's embedding unless a projection is configured
DROPOUT = 0.5


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm1d(c_out), nn.ReLU()]


class SampleCnnNet(nn.Module):
    """``wave[B, 59049] -> (logits[B, n_labels], embedding[B, E])``; E is ``projection_size`` when it is > 0
    (the projected feature), else 512 (the pooled feature itself)."""

    projection: nn.Linear | None

    def __init__(self, n_labels: int = 50, projection_size: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = _conv_bn_relu(1, BLOCK_CHANNELS[0], 3, stride=3)
        c_in = BLOCK_CHANNELS[0]
        for c_out in BLOCK_CHANNELS:
            layers += _conv_bn_relu(c_in, c_out, 3, padding=1) + [nn.MaxPool1d(3)]
            c_in = c_out
        layers += _conv_bn_relu(c_in, EMBEDDING_SIZE, 1)
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(DROPOUT)
        self.output = nn.Linear(EMBEDDING_SIZE, n_labels)
        self.projection = nn.Linear(EMBEDDING_SIZE, projection_size) if projection_size else None

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """The pooled 512-d feature of each window, ``[B, 512]`` (time axis is 1 after the last pool)."""
        features: torch.Tensor = self.features(wave.unsqueeze(1))
        return features.flatten(1)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(wave)
        logits = self.output(self.dropout(features))
        return logits, self.projection(features) if self.projection is not None else features


class WaveformTagger(Tagger):
    """``wave[B, spec.window] -> (probs, logits, embedding)``: the network on raw samples, no front end."""

    net: SampleCnnNet

    def __init__(self, spec: ModelSpec, net: SampleCnnNet) -> None:
        super().__init__(spec)
        self.net = net

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, embedding = self.net(wave)
        outputs = (torch.sigmoid(logits), logits)
        return outputs + (embedding,) if self.spec.embedding_size else outputs


def samplecnn_spec(name: str, labels: tuple[str, ...], weights_sha256: str = "", *, default: bool = False,
                   source: str = "", licence: str = "", attribution: str = "",
                   embedding_size: int = EMBEDDING_SIZE) -> ModelSpec:
    """The spec of a SampleCNN tagger: 59049-sample windows, no overlap, no padding; the embedding is the 512-d
    pooled feature, or a projection of it when ``embedding_size`` is another size."""
    return ModelSpec(
        name=name, kind="waveform", architecture="samplecnn", labels=labels, window=WINDOW, hop=WINDOW, pad=0,
        embedding_size=embedding_size, weights_file=f"{name}.safetensors", weights_sha256=weights_sha256,
        licence=licence, attribution=attribution, source=source, default=default,
    )


def build(spec: ModelSpec) -> WaveformTagger:
    """A SampleCNN tagger for ``spec`` with freshly initialised weights."""
    projection = spec.embedding_size if spec.embedding_size != EMBEDDING_SIZE else 0
    return WaveformTagger(spec, SampleCnnNet(spec.n_labels, projection))
