"""What every tagger declares about itself (:class:`ModelSpec`), and the declarations of the registered ones.

Nothing here imports torch: what only reads specs (the pipeline's windowing, ONNX Runtime runs, listings and
queries) starts without it (~0.8 s). The networks, their builders and weights are in :mod:`.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from catalogue_tagger.errors import UnknownModel
from catalogue_tagger.models.labels import MSD_LABELS, MTT_LABELS

ModelKind = Literal["spectrogram", "waveform"]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # registry name, stable: "musicnn-mtt"
    kind: ModelKind
    architecture: str  # "musicnn", "vgg", "samplecnn"
    labels: tuple[str, ...]
    window: int  # samples per segment fed to the network
    hop: int  # samples between the starts of consecutive segments
    pad: int  # reflect context (samples) added before the first and after the last sample of a track
    embedding_size: int  # 0: no embedding output
    weights_file: str  # file name under catalogue_tagger/models/weights/
    weights_sha256: str  # sha256 of that file; a different hash is a different model version
    licence: str
    attribution: str
    source: str  # where the weights came from
    roc_auc: float | None = None  # published figures of the weights
    pr_auc: float | None = None
    default: bool = False  # tagged by `catalogue-tagger tag` when no --models is given
    sample_rate: int = 16000

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("probs", "logits", "embedding") if self.embedding_size else ("probs", "logits")

    @property
    def n_labels(self) -> int:
        return len(self.labels)


# musicnn's segments: 187 log-mel frames of 512-sample FFTs, hop 256, at 16 kHz (models.frontend)
N_FFT = 512
HOP = 256
PATCH_FRAMES = 187
SEGMENT_HOP = PATCH_FRAMES * HOP  # 47872 samples between patch starts
SEGMENT_WINDOW = SEGMENT_HOP + N_FFT - HOP  # 48128 samples feed 187 frames
SEGMENT_PAD = N_FFT // 2  # reflect context before the first and after the last sample (centred STFT)
MUSICNN_EMBEDDING_SIZE = 200  # the penultimate dense layer (models.musicnn)

SAMPLECNN_WINDOW = 3**10  # 59049 samples, ~3.69 s at 16 kHz (models.samplecnn)
SAMPLECNN_EMBEDDING_SIZE = 512  # the pooled feature; the tagger's embedding unless a projection is configured

# sota-music-tagging-models (models.sota): architecture -> (window in samples, embedding size)
SOTA_SHAPES: dict[str, tuple[int, int]] = {
    "sota-musicnn": (48000, 200),  # 3 s: the window musicnn was trained and evaluated on
    "sota-fcn": (464000, 0),  # 29 s
    "sota-crnn": (464000, 0),
}
SOTA_LICENCE = "MIT"
SOTA_COPYRIGHT = "Copyright (c) 2020 Music Technology Group, Universitat Pompeu Fabra. Code developed by Minz Won."
SOTA_ATTRIBUTION = f"{SOTA_COPYRIGHT} (sota-music-tagging-models; Won, Ferraro, Bogdanov, Serra, SMC 2020)"
SOTA_REPOSITORY = "minzwon/sota-music-tagging-models"
SOTA_COMMIT = "36aa13b7205ff156cf4dcab60fd69957da453151"
SOTA_PAPER = ('Won et al., "Evaluation of CNN-based automatic music tagging models", SMC 2020, '
              "MagnaTagATune results (ROC-AUC / PR-AUC, test split)")
# registry name -> (ROC-AUC, PR-AUC) on the MTAT test split, as published in that table
SOTA_PUBLISHED_AUCS: dict[str, tuple[float, float]] = {
    "musicnn-sota-mtt": (0.9106, 0.4493),
    "fcn-mtt": (0.9005, 0.4295),
    "crnn-mtt": (0.8722, 0.3625),
}


def sota_spec(name: str, architecture: str, checkpoint: str, weights_sha256: str) -> ModelSpec:
    """A converted sota-music-tagging-models tagger: consecutive windows of its training length, no context."""
    window, embedding_size = SOTA_SHAPES[architecture]
    return ModelSpec(
        name=name, kind="spectrogram", architecture=architecture,
        labels=MTT_LABELS,  # split/mtat/tags.npy's order (checked on conversion)
        window=window, hop=window, pad=0, embedding_size=embedding_size,
        weights_file=f"{name}.safetensors", weights_sha256=weights_sha256, licence=SOTA_LICENCE,
        attribution=SOTA_ATTRIBUTION,
        source=f"{SOTA_REPOSITORY}@{SOTA_COMMIT[:7]} models/mtat/{checkpoint}/best_model.pth; AUCs: {SOTA_PAPER}",
        roc_auc=SOTA_PUBLISHED_AUCS[name][0], pr_auc=SOTA_PUBLISHED_AUCS[name][1],
    )


def samplecnn_spec(name: str, labels: tuple[str, ...], weights_sha256: str = "", *, default: bool = False,
                   source: str = "", licence: str = "", attribution: str = "",
                   embedding_size: int = SAMPLECNN_EMBEDDING_SIZE) -> ModelSpec:
    """The spec of a SampleCNN tagger: 59049-sample windows, no overlap, no padding; the embedding is the 512-d
    pooled feature, or a projection of it when ``embedding_size`` is another size."""
    return ModelSpec(
        name=name, kind="waveform", architecture="samplecnn", labels=labels, window=SAMPLECNN_WINDOW,
        hop=SAMPLECNN_WINDOW, pad=0, embedding_size=embedding_size, weights_file=f"{name}.safetensors",
        weights_sha256=weights_sha256, licence=licence, attribution=attribution, source=source, default=default,
    )


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
                      0.9066769123674747, 0.38310571748763617, embedding_size=MUSICNN_EMBEDDING_SIZE, default=True),
        _musicnn_spec("musicnn-msd", "musicnn", MSD_LABELS, "MSD_musicnn",
                      "ee936e3554cf899a67891fb7fabfca66254f4016b087274d24188aa3e7b07e92",
                      0.8801927178090048, 0.28906431196994925, embedding_size=MUSICNN_EMBEDDING_SIZE),
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
# projection used in training only), on freely licensed music, its tag layer then refitted on the teachers' log-odds
# (docs/waveform-tagger.md). A new hash is a new model version: rows of the previous ones (f21a571c..., be51e217...,
# 479b1805...) stay in Postgres under their own versions.
SPECS["samplecnn-mtt"] = samplecnn_spec(
    "samplecnn-mtt", MTT_LABELS, "3a2265e2a582e09df2e5724fec611e4fcfbd3252fc49d92c524561b3959e8207",
    default=True, licence="MIT",
    attribution="catalogue-tagger; teachers musicnn-mtt (musicnn 0.1.0, ISC, Music Technology Group, UPF) and "
                "fcn-mtt (sota-music-tagging-models, MIT, Minz Won / Music Technology Group, UPF)",
    source="catalogue-tagger models train-waveform on 14.86 h of Debian game music (10.06 h trained on), started "
           "from the previous version's weights, then models refit-readout of its tag layer (model card: "
           "docs/waveform-tagger.md)",
)

# Won et al. (SMC 2020), MIT: converted from ../shared/weights/sota-mtat (manifest-sota-mtat.json)
for _spec in (
    sota_spec("musicnn-sota-mtt", "sota-musicnn", "musicnn",
              "c21601f1979a367ebad0941eeb3ee87a14aa920429a3f93f83f15e7c613adb60"),
    sota_spec("fcn-mtt", "sota-fcn", "fcn", "1e5c0aa6511ee88c363d6162b21ee34ee3979007beeb54ffd7deaa5afe6dee2d"),
    sota_spec("crnn-mtt", "sota-crnn", "crnn", "3aeb67977a8269ad69786cab8c541e435bc105a23d2622d77b77e9d5f0411e9f"),
):
    SPECS[_spec.name] = _spec


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; registered: {', '.join(SPECS)}") from None


def list_specs() -> list[ModelSpec]:
    """Every registered spec, in registration order."""
    return list(SPECS.values())
