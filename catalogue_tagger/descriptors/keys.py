"""Key names, the Camelot wheel, and the keys compatible with a key (for harmonic mixing).

A key is a tonic pitch class (0 = C … 11 = B) and a mode; it is written ``"A minor"`` with the tonic spelled as
DJ software does (``C C# D Eb E F F# G Ab A Bb B``). Parsing accepts either spelling (``"G# minor"``,
``"Abm"``, ``"8A"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from catalogue_tagger.errors import TaggerError

TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_SPELLINGS = {
    "C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4, "F": 5, "E#": 5, "F#": 6,
    "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11, "CB": 11,
}  # fmt: skip
_KEY = re.compile(r"^\s*([A-Ga-g][#b♯♭]?)\s*(major|minor|maj|min|m|M)?\s*$")
_CAMELOT = re.compile(r"^\s*(1[0-2]|[1-9])\s*([ABab])\s*$")


class UnknownKey(TaggerError):
    """A key name that cannot be read."""

    kind = "unknown_key"


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class, 0 = C
    minor: bool

    @property
    def name(self) -> str:
        return f"{TONICS[self.tonic]} {'minor' if self.minor else 'major'}"

    @property
    def camelot(self) -> str:
        """Camelot code: ``8B`` is C major, ``8A`` A minor; one step clockwise is a fifth up."""
        major_tonic = (self.tonic + 3) % 12 if self.minor else self.tonic
        number = (7 * major_tonic + 8) % 12 or 12
        return f"{number}{'A' if self.minor else 'B'}"

    def transposed(self, semitones: int) -> Key:
        return Key((self.tonic + semitones) % 12, self.minor)

    @property
    def relative(self) -> Key:
        return Key((self.tonic + 3) % 12, False) if self.minor else Key((self.tonic - 3) % 12, True)

    @property
    def parallel(self) -> Key:
        return Key(self.tonic, not self.minor)

    def compatible(self) -> tuple[Key, ...]:
        """The key itself, its Camelot neighbours (a fifth up and down, same mode) and its relative key."""
        return (self, self.transposed(7), self.transposed(5), self.relative)

    @classmethod
    def parse(cls, text: str) -> Key:
        """``"A minor"``, ``"Am"``, ``"F# major"``, ``"Gb"`` (major) or a Camelot code ``"8A"``."""
        if match := _CAMELOT.match(text):
            number, letter = int(match.group(1)), match.group(2).upper()
            major_tonic = (7 * (number - 8)) % 12  # 7 is its own inverse mod 12
            return cls((major_tonic - 3) % 12, True) if letter == "A" else cls(major_tonic, False)
        match = _KEY.match(text)
        if match is None:
            raise UnknownKey(f"not a key: {text!r} (try 'A minor', 'F# major', 'Ebm' or a Camelot code like '8A')")
        tonic = match.group(1)[0].upper() + match.group(1)[1:].replace("♯", "#").replace("♭", "b").upper()
        mode = match.group(2) or ""
        return cls(_SPELLINGS[tonic], mode in ("minor", "min", "m"))


def all_keys() -> tuple[Key, ...]:
    """The 24 keys: C major … B major, then C minor … B minor (the order of key-profile scores)."""
    return tuple(Key(t, False) for t in range(12)) + tuple(Key(t, True) for t in range(12))
