"""Mel filterbanks as ``librosa.filters.mel`` computes them, shipped as constants in ``filterbanks.npz``.

Importing librosa's filters costs a process about a second and ~110 MB (scipy.signal, numba): the inference
process paid it to open a spectrogram tagger, every decode worker to start its tempo tracker. The matrices are
fixed by their parameters, so they are computed once, by librosa, and shipped:

    mel("musicnn")                       # (96, 257) float32, what librosa.filters.mel(**FILTERBANKS[...]) returns

``python -m catalogue_tagger.filterbanks`` rewrites the file from librosa; a test checks every entry against
librosa, so a change of either shows.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PATH = Path(__file__).with_name("filterbanks.npz")

#: name -> the keyword arguments of ``librosa.filters.mel`` that make it
FILTERBANKS: dict[str, dict[str, Any]] = {
    # musicnn's (and the VGG taggers') log-mel front end: Slaney scale and area normalisation
    "musicnn": {"sr": 16000, "n_fft": 512, "n_mels": 96},
    # Won et al.'s torchaudio front end: HTK scale, 0-8 kHz, peak 1
    "sota-htk": {"sr": 16000, "n_fft": 512, "n_mels": 96, "fmin": 0.0, "fmax": 8000.0, "htk": True, "norm": None,
                 "dtype": np.float64},
    # the tempo tracker's onset envelope
    "tempo": {"sr": 16000, "n_fft": 512, "n_mels": 40, "fmin": 30.0, "fmax": 8000.0},
}


@cache
def _shipped() -> dict[str, npt.NDArray[Any]]:
    with np.load(PATH) as npz:
        return {name: npz[name] for name in npz.files}


def mel(name: str) -> npt.NDArray[Any]:
    """The filterbank ``name`` (``(n_mels, 1 + n_fft // 2)``, librosa's dtype); a copy, the caller's to keep."""
    if name not in FILTERBANKS:
        raise KeyError(f"no filterbank {name!r}; known: {', '.join(FILTERBANKS)}")
    return _shipped()[name].copy()


def compute(name: str) -> npt.NDArray[Any]:
    """The filterbank ``name`` computed by librosa now (what the shipped file must hold)."""
    import librosa

    return np.asarray(librosa.filters.mel(**FILTERBANKS[name]))


def main() -> None:
    np.savez(PATH, **{name: compute(name) for name in FILTERBANKS})  # type: ignore[arg-type]
    print(f"wrote {PATH}: {', '.join(FILTERBANKS)}")


if __name__ == "__main__":
    main()
