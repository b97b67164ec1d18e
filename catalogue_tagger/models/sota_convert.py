"""Convert the sota-music-tagging-models MTAT checkpoints into the product's safetensors weights.

Input is a folder laid out as ``../shared/weights/sota-mtat``: ``{musicnn,fcn,crnn}/best_model.pth``
(state-dict pickles of Won et al.'s repo, commit ``36aa13b``, each pinned by sha256) and ``tags.json``
(``split/mtat/tags.npy``, the output order). Checkpoints are read with ``torch.load(weights_only=True)``:
no code from the pickle runs, and nothing is downloaded.

Each checkpoint's front-end constants (the Hann window and torchaudio's mel matrix) are checked against
the ones the module computes and then dropped; ``spec_bn`` becomes ``frontend.bn``, every other tensor
goes under ``net.`` unchanged, ``num_batches_tracked`` counters are dropped. Output bytes are
deterministic (:func:`convert.serialize`), so a re-conversion reproduces the pinned hashes. The pins,
provenance and licence live in ``manifest-sota-mtat.json`` beside the musicnn wheel's ``manifest.json``
(each converter owns its manifest and rewrites it whole).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from catalogue_tagger.errors import ModelError, WeightsMismatch
from catalogue_tagger.models import sota, specs
from catalogue_tagger.models.convert import serialize, sha256_of
from catalogue_tagger.models.labels import MTT_LABELS
from catalogue_tagger.models.sota_frontend import hann_window, htk_mel_filterbank

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST_FILE = "manifest-sota-mtat.json"
LICENCE_FILE = "LICENSE-sota-music-tagging-models"
TAGS_FILE = "tags.json"
TAGS_SHA256 = "57764e66f6b9fd8b108014ab0858a0b0e5c7e06ab69bb9e0f9b98119b300f677"
# torchaudio 0.x's stored filterbank and librosa's HTK filterbank differ by float32 rounding only
MEL_TOLERANCE = 1e-4

LICENCE_TEXT = f"""MIT License

{specs.SOTA_COPYRIGHT}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.

---
Applies to the weights files musicnn-sota-mtt.safetensors, fcn-mtt.safetensors and crnn-mtt.safetensors,
converted from models/mtat/{{musicnn,fcn,crnn}}/best_model.pth of {specs.SOTA_REPOSITORY}
(commit {specs.SOTA_COMMIT}); see {MANIFEST_FILE}.
"""


@dataclass(frozen=True)
class SotaCheckpoint:
    """One shipped weights file: the checkpoint it comes from, pinned."""

    name: str  # registry name
    folder: str  # sub-folder of the source (and of the repo's models/mtat/)
    sha256: str  # of best_model.pth

    @property
    def weights_file(self) -> str:
        return f"{self.name}.safetensors"

    def path(self, source: Path) -> Path:
        return source / self.folder / "best_model.pth"


CHECKPOINTS: tuple[SotaCheckpoint, ...] = (
    SotaCheckpoint("musicnn-sota-mtt", "musicnn", "690ace3bb5d49d90dd38fe3ec05a1185350b3bc3742bd7ee941f56b649b2c893"),
    SotaCheckpoint("fcn-mtt", "fcn", "e89d751202d38c3ae69855782bc27010f87051958dbec64f5aa762364dbac271"),
    SotaCheckpoint("crnn-mtt", "crnn", "cd22fc70cafd06f8f2bfc7dd795abccb1f4b50d5b09094c39ad100baf87475a3"),
)


def _verify(path: Path, expected: str) -> None:
    try:
        actual = sha256_of(path)
    except FileNotFoundError:
        raise ModelError(f"{path} is missing (expected the sota-mtat layout: musicnn/, fcn/, crnn/, tags.json)") from None
    if actual != expected:
        raise WeightsMismatch(f"{path}: sha256 {actual}, expected {expected}")


def read_checkpoint(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (sha256-checked), loaded without running pickled code."""
    _verify(path, sha256)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return dict(state)


def state_dict_from_checkpoint(checkpoint: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Map a checkpoint onto :class:`sota.SotaTagger`'s state dict, after checking its front-end constants."""
    window = checkpoint["spec.spectrogram.window"].numpy()
    if window.shape != (512,) or float(np.abs(window - hann_window()).max()) > 1e-6:
        raise ModelError(f"{name}: the checkpoint's STFT window is not a periodic Hann window of 512")
    mel = checkpoint["spec.mel_scale.fb"].numpy()
    delta = float(np.abs(mel - htk_mel_filterbank()).max())
    if delta > MEL_TOLERANCE:
        raise ModelError(f"{name}: the checkpoint's mel filterbank differs from the HTK one by {delta:.2e}")
    state: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if key.startswith("spec.") or key.endswith(".num_batches_tracked"):
            continue
        state[f"frontend.bn.{key.removeprefix('spec_bn.')}" if key.startswith("spec_bn.") else f"net.{key}"] = value
    return state


def read_tags(source: Path) -> tuple[str, ...]:
    """The output order of the checkpoints (``tags.json``), refused unless it is ``MTT_LABELS``."""
    path = source / TAGS_FILE
    _verify(path, TAGS_SHA256)
    tags = tuple(json.loads(path.read_text(encoding="utf-8")))
    if tags != MTT_LABELS:
        raise ModelError(f"{path}: tag order differs from MTT_LABELS; the registry specs would mislabel outputs")
    return tags


@dataclass(frozen=True)
class ConvertedWeights:
    """One weights file written by :func:`convert_sota_weights`."""

    weights_file: str
    sha256: str
    checkpoint: str  # path in the repo
    checkpoint_sha256: str
    n_tensors: int
    n_values: int
    roc_auc: float
    pr_auc: float


@dataclass(frozen=True)
class SotaManifest:
    """What ``manifest-sota-mtat.json`` records: provenance, licence and the pinned files."""

    models: dict[str, ConvertedWeights]
    repository: str = specs.SOTA_REPOSITORY
    commit: str = specs.SOTA_COMMIT
    tags_sha256: str = TAGS_SHA256
    licence: str = specs.SOTA_LICENCE
    attribution: str = specs.SOTA_ATTRIBUTION
    licence_file: str = LICENCE_FILE
    published_aucs: str = specs.SOTA_PAPER

    def to_json(self) -> str:
        document = {
            "source": {"repository": self.repository, "commit": self.commit, "tags_sha256": self.tags_sha256},
            "licence": self.licence,
            "attribution": self.attribution,
            "licence_file": self.licence_file,
            "published_aucs": self.published_aucs,
            "models": {name: asdict(entry) for name, entry in self.models.items()},
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"


def convert_sota_weights(source: Path, out: Path = WEIGHTS_DIR) -> SotaManifest:
    """Write the three weights files, their manifest and the MIT notice under ``out``; return the manifest."""
    read_tags(source)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, ConvertedWeights] = {}
    for entry in CHECKPOINTS:
        state = state_dict_from_checkpoint(read_checkpoint(entry.path(source), entry.sha256), entry.name)
        metadata = {"format": "pt", "model": entry.name,
                    "source": f"{specs.SOTA_REPOSITORY}@{specs.SOTA_COMMIT}:models/mtat/{entry.folder}/best_model.pth"}
        path = out / entry.weights_file
        path.write_bytes(serialize(state, metadata))
        roc_auc, pr_auc = specs.SOTA_PUBLISHED_AUCS[entry.name]
        models[entry.name] = ConvertedWeights(
            weights_file=entry.weights_file, sha256=sha256_of(path),
            checkpoint=f"models/mtat/{entry.folder}/best_model.pth", checkpoint_sha256=entry.sha256,
            n_tensors=len(state), n_values=int(sum(t.numel() for t in state.values())), roc_auc=roc_auc, pr_auc=pr_auc,
        )
    (out / LICENCE_FILE).write_text(LICENCE_TEXT, encoding="utf-8")
    manifest = SotaManifest(models)
    (out / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return manifest
