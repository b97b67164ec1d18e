"""The registered taggers' networks: a builder per architecture, pinned weights per spec (the specs themselves
are declared in :mod:`.specs`, without torch).

Adding a model is one :data:`~catalogue_tagger.models.specs.SPECS` entry (plus a builder here if the
architecture is new); for a waveform
model such as SampleCNN that is ``kind="waveform"``, ``window=59049``, ``hop=59049``, ``pad=0``. The
spectrogram taggers are converted from the musicnn wheel (``manifest.json``); ``samplecnn-mtt`` is trained
here (``catalogue-tagger models train-waveform``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from catalogue_tagger.errors import ModelError, WeightsMismatch
from catalogue_tagger.models import musicnn, samplecnn, sota, vgg
from catalogue_tagger.models.base import Tagger
from catalogue_tagger.models.spectrogram import SpectrogramTagger
from catalogue_tagger.models.specs import ModelSpec, get_spec

WEIGHTS_DIR = Path(__file__).parent / "weights"

# architecture -> module with random weights for that spec
BUILDERS: dict[str, Callable[[ModelSpec], Tagger]] = {
    "musicnn": lambda spec: SpectrogramTagger(spec, musicnn.MusicnnNet(spec.n_labels)),
    "vgg": lambda spec: SpectrogramTagger(spec, vgg.VggNet(spec.n_labels, pools="musicnn")),
    "vgg-as-trained-msd": lambda spec: SpectrogramTagger(spec, vgg.VggNet(spec.n_labels, pools="as_trained_msd")),
    "samplecnn": samplecnn.build,
    **{architecture: sota.build for architecture in sota.NETWORKS},
}


def build_model(spec: ModelSpec) -> Tagger:
    """The module of ``spec``'s architecture, with untrained weights."""
    builder = BUILDERS.get(spec.architecture)
    if builder is None:
        raise ModelError(f"{spec.name}: no builder for architecture {spec.architecture!r}")
    return builder(spec)


def read_weights(spec: ModelSpec, weights_dir: Path = WEIGHTS_DIR) -> dict[str, torch.Tensor]:
    """The state dict of ``spec``, refused unless the file's sha256 is the pinned one."""
    path = weights_dir / spec.weights_file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{spec.name}: weights file {path} is missing; run `catalogue-tagger models convert`") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.weights_sha256:
        raise WeightsMismatch(f"{spec.name}: {path} has sha256 {actual}, expected {spec.weights_sha256}")
    return load_safetensors(data)


def load_model(name: str, device: str | torch.device = "cpu", weights_dir: Path = WEIGHTS_DIR) -> Tagger:
    """The pretrained tagger ``name`` in eval mode on ``device``, with verified weights."""
    spec = get_spec(name)
    model = build_model(spec)
    model.load_state_dict(read_weights(spec, weights_dir), strict=True)
    return model.eval().requires_grad_(False).to(device)
