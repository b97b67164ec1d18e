"""The registered taggers: a spec per name, a builder per architecture, pinned weights per spec.

Adding a model is one :data:`SPECS` entry (plus a builder if the architecture is new); for a waveform
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

from catalogue_tagger.errors import ModelError, UnknownModel, WeightsMismatch
from catalogue_tagger.models import musicnn, samplecnn, sota, vgg
from catalogue_tagger.models.base import ModelSpec, Tagger
from catalogue_tagger.models.frontend import SEGMENT_HOP, SEGMENT_PAD, SEGMENT_WINDOW
from catalogue_tagger.models.labels import MSD_LABELS, MTT_LABELS
from catalogue_tagger.models.spectrogram import SpectrogramTagger

WEIGHTS_DIR = Path(__file__).parent / "weights"

MUSICNN_LICENCE = "ISC"
MUSICNN_ATTRIBUTION = "Copyright (c) 2019 Music Technology Group, Universitat Pompeu Fabra; code by Jordi Pons"
MUSICNN_SOURCE = "musicnn 0.1.0 wheel (PyPI, sha256 f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa), checkpoint "


def _musicnn_spec(name: str, architecture: str, labels: tuple[str, ...], checkpoint: str, sha256: str,
                  roc_auc: float, pr_auc: float, embedding_size: int = 0, default: bool = False) -> ModelSpec:
    """A spectrogram tagger converted from the musicnn wheel: 187-frame patches, one per segment."""
    return ModelSpec(
        name=name, kind="spectrogram", architecture=architecture, labels=labels,
        window=SEGMENT_WINDOW, hop=SEGMENT_HOP, pad=SEGMENT_PAD, embedding_size=embedding_size,
        weights_file=f"{name}.safetensors", weights_sha256=sha256, licence=MUSICNN_LICENCE,
        attribution=MUSICNN_ATTRIBUTION, source=MUSICNN_SOURCE + checkpoint,
        roc_auc=roc_auc, pr_auc=pr_auc, default=default,
    )


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _musicnn_spec("musicnn-mtt", "musicnn", MTT_LABELS, "MTT_musicnn",
                      "4346f2be1167b662c52dd5535f4cc81c16512a348cb1108124d3c64a18f185ed",
                      0.9066769123674747, 0.38310571748763617, embedding_size=musicnn.EMBEDDING_SIZE, default=True),
        _musicnn_spec("musicnn-msd", "musicnn", MSD_LABELS, "MSD_musicnn",
                      "ee936e3554cf899a67891fb7fabfca66254f4016b087274d24188aa3e7b07e92",
                      0.8801927178090048, 0.28906431196994925, embedding_size=musicnn.EMBEDDING_SIZE),
        _musicnn_spec("vgg-mtt", "vgg", MTT_LABELS, "MTT_vgg",
                      "4fe9a769edb1b68f0cc6da8260e4973c756d16711d47615beacfc213ab6e9a48",
                      0.9030268990308291, 0.382267685217377),
        # The MSD vgg weights run in the network they were trained in (see vgg.POOLS), not in the
        # MTT-shaped graph musicnn 0.1.0 restores them into: the tags are the ones its AUCs describe.
        _musicnn_spec("vgg-msd", "vgg-as-trained-msd", MSD_LABELS, "MSD_vgg",
                      "7e880e3cbe98e1f1271290c7e3fe54604802a94136a61e065daaddfb3d9de622",
                      0.8767615259520635, 0.28192480359001065),
    )
}

# Trained here: SampleCNN distilled from musicnn-mtt and fcn-mtt (tags) and musicnn-mtt's embedding (through a
# projection used in training only), on freely licensed music (docs/waveform-tagger.md). A new hash is a new model
# version: rows of the previous one (f21a571c...) stay in Postgres under their own version.
SPECS["samplecnn-mtt"] = samplecnn.samplecnn_spec(
    "samplecnn-mtt", MTT_LABELS, "be51e2172538e36b5c688ed1897ae644d961e8da701a164aa77ba96d139460be",
    default=True, licence="MIT",
    attribution="catalogue-tagger; teachers musicnn-mtt (musicnn 0.1.0, ISC, Music Technology Group, UPF) and "
                "fcn-mtt (sota-music-tagging-models, MIT, Minz Won / Music Technology Group, UPF)",
    source="catalogue-tagger models train-waveform on 9.83 h of Debian game music, started from the previous "
           "version's weights (model card: docs/waveform-tagger.md)",
)

# Won et al. (SMC 2020), MIT: converted from ../shared/weights/sota-mtat (manifest-sota-mtat.json)
for _spec in (
    sota.sota_spec("musicnn-sota-mtt", "sota-musicnn", "musicnn",
                   "c21601f1979a367ebad0941eeb3ee87a14aa920429a3f93f83f15e7c613adb60"),
    sota.sota_spec("fcn-mtt", "sota-fcn", "fcn", "1e5c0aa6511ee88c363d6162b21ee34ee3979007beeb54ffd7deaa5afe6dee2d"),
    sota.sota_spec("crnn-mtt", "sota-crnn", "crnn", "3aeb67977a8269ad69786cab8c541e435bc105a23d2622d77b77e9d5f0411e9f"),
):
    SPECS[_spec.name] = _spec

# architecture -> module with random weights for that spec
BUILDERS: dict[str, Callable[[ModelSpec], Tagger]] = {
    "musicnn": lambda spec: SpectrogramTagger(spec, musicnn.MusicnnNet(spec.n_labels)),
    "vgg": lambda spec: SpectrogramTagger(spec, vgg.VggNet(spec.n_labels, pools="musicnn")),
    "vgg-as-trained-msd": lambda spec: SpectrogramTagger(spec, vgg.VggNet(spec.n_labels, pools="as_trained_msd")),
    "samplecnn": samplecnn.build,
    **{architecture: sota.build for architecture in sota.NETWORKS},
}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; registered: {', '.join(SPECS)}") from None


def list_specs() -> list[ModelSpec]:
    """Every registered spec, in registration order."""
    return list(SPECS.values())


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
