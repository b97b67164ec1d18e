"""The TensorFlow tensor-bundle reader, on synthetic bytes and on a real checkpoint from the musicnn wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from catalogue_tagger.models.convert import read_checkpoint_from_wheel
from catalogue_tagger.models.tfbundle import (
    CheckpointFormatError,
    is_optimizer_slot,
    read_index,
    snappy_decompress,
    table_entries,
)

REFERENCE_VARIABLES = {  # a few (name, shape) pairs from musicnn's MTT_musicnn checkpoint
    "conv2d/kernel": (7, 38, 1, 204),
    "conv2d_5/kernel": (7, 561, 1, 64),
    "batch_normalization_9/moving_variance": (1506,),
    "dense/kernel": (1506, 200),
    "dense_1/bias": (50,),
}


def test_snappy_literal_and_overlapping_copy() -> None:
    # preamble 10; literal "ab"; copy-1 (length 8, offset 2) -> "abababababab"[:10]
    stream = bytes([10, (2 - 1) << 2, ord("a"), ord("b"), 0b001 | ((8 - 4) << 2), 2])
    assert snappy_decompress(stream) == b"ababababab"
    with pytest.raises(CheckpointFormatError):
        snappy_decompress(bytes([11]) + stream[1:])


def test_rejects_non_table() -> None:
    with pytest.raises(CheckpointFormatError):
        list(table_entries(b"\0" * 100))


def test_optimizer_slots() -> None:
    assert is_optimizer_slot("dense/kernel/Adam") and is_optimizer_slot("dense/kernel/Adam_1")
    assert is_optimizer_slot("beta1_power") and not is_optimizer_slot("dense/kernel")


def test_real_checkpoint(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        index = archive.read("musicnn/MTT_musicnn/.index")
        entries = read_index(index)
        names = [e.name for e in entries]
        assert names == sorted(names) and len(names) == 150  # 64 inference variables + 86 optimizer entries
        variables = read_checkpoint_from_wheel(archive, "musicnn/MTT_musicnn/")
    assert len(variables) == 64
    for name, shape in REFERENCE_VARIABLES.items():
        assert variables[name].shape == shape and variables[name].dtype == np.float32
    assert sum(v.size for v in variables.values()) == 787_159 + 4_920
    assert all(np.isfinite(v).all() for v in variables.values())
    assert (variables["batch_normalization_9/moving_variance"] > 0).all()
