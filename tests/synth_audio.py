"""Synthetic 16 kHz audio with known tempo and key, for descriptor tests (importable from every test folder:
pytest puts ``tests/`` on ``sys.path`` for its root ``conftest.py``)."""

from __future__ import annotations

import numpy as np

from catalogue_tagger.descriptors import Key

SR = 16_000


def click_track(bpm: float, seconds: float = 30.0, seed: int = 0) -> np.ndarray:
    """Decaying noise bursts on every beat, accented on 1 of 4 (no off-beats: the beat is the only level)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * SR), np.float32)
    burst = (rng.standard_normal(800) * np.exp(-np.arange(800) / 120)).astype(np.float32)
    period = 60.0 / bpm
    for i, t in enumerate(np.arange(0.1, seconds - 0.1, period)):
        at = int(t * SR)
        gain = 1.0 if i % 4 == 0 else 0.6
        y[at : at + 800] += gain * burst[: len(y) - at]
    return y


def tone(midi_notes: list[int], seconds: float) -> np.ndarray:
    """A chord of harmonic tones (8 partials, 1/h amplitudes) with a short attack and decay."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for note in midi_notes:
        f0 = 440.0 * 2 ** ((note - 69) / 12)
        for h in range(1, 9):
            if h * f0 < SR / 2:
                y += np.sin(2 * np.pi * h * f0 * t) / h
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / (seconds * 1.5))
    return (0.1 * y * envelope).astype(np.float32)


def progression(key: Key, seconds_per_chord: float = 1.0, repeats: int = 6) -> np.ndarray:
    """I–IV–V–I (major) or i–iv–V–i (harmonic minor) with the bass an octave below, in ``key``."""
    third = 3 if key.minor else 4
    chords = [(0, third, 7), (5, 5 + (3 if key.minor else 4), 12), (7, 11, 14), (0, third, 7)]
    base = 48 + key.tonic
    parts = [tone([base - 12 + c[0]] + [base + n for n in c], seconds_per_chord) for c in chords]
    return np.concatenate(parts * repeats)
