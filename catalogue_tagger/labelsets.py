"""A catalogue owner's labels: ``uri,label[,value]`` CSV files, and the yes/no targets they imply.

A row says the track at ``uri`` has ``label`` (value 1, the default) or has not (value 0; ``yes``/``no``,
``true``/``false`` also read). For one label, a track is positive with a row of value 1, negative with
a row of value 0 — and, without a row for that label, negative when it is labelled otherwise (one-vs-rest
over the labelled tracks: a file that gives each track its package trains "package X or not").
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalogue_tagger.errors import LabelsFileError

_TRUE = {"1", "yes", "y", "true", "t"}
_FALSE = {"0", "no", "n", "false", "f"}


@dataclass(frozen=True)
class LabelRow:
    uri: str
    label: str
    value: bool


@dataclass(frozen=True)
class LabelSet:
    """The rows of a labels file, and where they came from."""

    rows: tuple[LabelRow, ...]
    source: str

    @property
    def uris(self) -> tuple[str, ...]:
        """Every labelled track, in first-seen order."""
        return tuple(dict.fromkeys(r.uri for r in self.rows))

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label, in first-seen order."""
        return tuple(dict.fromkeys(r.label for r in self.rows))

    def targets(self, label: str, uris: Sequence[str]) -> npt.NDArray[np.int8]:
        """``(len(uris),)``: 1 positive, 0 negative, -1 unknown (a uri this file does not label)."""
        explicit = {r.uri: r.value for r in self.rows if r.label == label}
        labelled = set(self.uris)
        out = np.full(len(uris), -1, dtype=np.int8)
        for i, uri in enumerate(uris):
            if uri in explicit:
                out[i] = 1 if explicit[uri] else 0
            elif uri in labelled:
                out[i] = 0
        return out


def parse_rows(lines: Iterable[Sequence[str]], source: str) -> LabelSet:
    rows: list[LabelRow] = []
    for number, fields in enumerate(lines, start=1):
        fields = [f.strip() for f in fields]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        if number == 1 and fields[0].lower() == "uri":
            continue  # header
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            raise LabelsFileError(f"{source}, line {number}: expected uri,label[,value], got {','.join(fields)!r}")
        value = True
        if len(fields) == 3 and fields[2]:
            word = fields[2].lower()
            if word not in _TRUE | _FALSE:
                raise LabelsFileError(f"{source}, line {number}: value {fields[2]!r} is not 1/0, yes/no or true/false")
            value = word in _TRUE
        rows.append(LabelRow(fields[0], fields[1], value))
    if not rows:
        raise LabelsFileError(f"{source}: no labels")
    return LabelSet(tuple(rows), source)


def read_labels(path: str | Path) -> LabelSet:
    """Read a ``uri,label[,value]`` CSV (a header line ``uri,label,…`` is optional)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return parse_rows(csv.reader(handle), str(path))
    except OSError as exc:
        raise LabelsFileError(f"cannot read labels file {path}: {exc}") from exc
