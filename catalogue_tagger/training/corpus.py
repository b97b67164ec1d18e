"""The training corpus: freely licensed game music from Debian packages, decoded once into a compact cache.

Layout. ``fetch-debian-music.sh DEST --packages "..."`` leaves one folder per package under ``DEST`` (its audio
files and ``COPYRIGHT``) plus ``SOURCES.txt``. :func:`prepare` decodes every track to 16 kHz mono with
:func:`catalogue_tagger.decode.decode_all` and stores it as float16 ``.npy`` under ``CACHE/wave/`` (about
115 MB per hour of music), then writes ``CACHE/index.json``: one entry per track with its package, sample
count and split. The split is by track (never segments of one track on both sides), stratified by package,
and depends only on the seed and the track names. Whole packages can be held apart (split ``held_apart``:
neither trained on nor validated on, kept for checking the embedding on music of unseen sources), and each
track can be capped to its first ``max_track_s`` seconds (the cap is part of the cache's index).

Mixtures (``mixes`` per training track, :func:`mix_tracks`) add training examples without new recordings: a
training track plus a looped stretch of another training track at a random lower level, stored like a decoded
track (package ``mix``, split ``train``) so that the teachers label the mixture itself. Both sources are
training tracks, so no validation or held-apart audio ever reaches training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalogue_tagger.decode import SAMPLE_RATE, decode_all
from catalogue_tagger.errors import TaggerError

logger = logging.getLogger(__name__)

#: Debian packages whose music may be used for training (package -> style). Other music is kept for evaluation.
TRAINING_PACKAGES: dict[str, str] = {
    "asc-music": "orchestral/rock", "nexuiz-music": "electronic", "wesnoth-1.16-music": "orchestral",
    "ufoai-music": "orchestral/ambient", "supertux-data": "chiptune/pop", "boswars-data": "orchestral/rock",
    "freedroidrpg-data": "electronic/ambient", "megaglest-data": "orchestral/folk",
    "widelands-data": "orchestral/folk", "extremetuxracer-data": "pop/rock", "hedgewars-data": "mixed",
    "openclonk-data": "orchestral/folk", "lugaru-data": "ambient",
}
AUDIO_SUFFIXES = (".ogg", ".opus", ".mp3", ".flac")
SPLITS = ("train", "validation", "held_apart")
MIX_PACKAGE = "mix"
MIX_GAIN_DB = (-6.0, 0.0)  # level of the second source relative to the first


class CorpusError(TaggerError):
    """The training corpus is missing, empty or inconsistent."""

    kind = "corpus_error"


@dataclass(frozen=True)
class CorpusTrack:
    track_id: str  # "<package>/<file name>", stable across machines
    package: str
    samples: int  # 16 kHz mono samples in the cache
    split: str  # "train" | "validation" | "held_apart"

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def cache_name(self) -> str:
        """File name of this track's cached arrays: readable, and unique even for odd characters."""
        digest = hashlib.sha1(self.track_id.encode()).hexdigest()[:10]
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.track_id.replace("/", "__"))
        return f"{stem}-{digest}"

    def wave_path(self, cache_dir: Path) -> Path:
        """Where this track's decoded waveform lies in ``cache_dir``."""
        return cache_dir / "wave" / f"{self.cache_name}.npy"


def discover(audio_dir: Path) -> list[tuple[str, Path]]:
    """``(package, file)`` of every audio file under the training-package folders of ``audio_dir``, sorted."""
    found = [
        (folder.name, path)
        for folder in sorted(audio_dir.iterdir()) if folder.is_dir() and folder.name in TRAINING_PACKAGES
        for path in sorted(folder.iterdir()) if path.suffix.lower() in AUDIO_SUFFIXES
    ]
    if not found:
        raise CorpusError(f"no audio of training packages under {audio_dir}")
    return found


def split_by_track(track_ids: Iterable[tuple[str, str]], val_fraction: float, seed: int) -> dict[str, str]:
    """``track_id -> split`` from ``(track_id, package)`` pairs: per package, a seeded share goes to validation.

    A package with one track trains; otherwise it gives ``round(val_fraction * n)`` tracks, at least one.
    """
    by_package: dict[str, list[str]] = {}
    for track_id, package in track_ids:
        by_package.setdefault(package, []).append(track_id)
    split: dict[str, str] = {}
    for package, ids in sorted(by_package.items()):
        ids = sorted(ids, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).hexdigest())
        n_val = 0 if len(ids) < 2 else max(1, round(val_fraction * len(ids)))
        split |= {t: ("validation" if i < n_val else "train") for i, t in enumerate(ids)}
    return split


class Corpus:
    """The cached corpus: track records and their waveforms (float16 on disk, memory-mapped)."""

    def __init__(self, cache_dir: Path, tracks: Sequence[CorpusTrack]) -> None:
        self.cache_dir = cache_dir
        self.tracks = tuple(tracks)

    @classmethod
    def open(cls, cache_dir: Path) -> Corpus:
        index = cache_dir / "index.json"
        if not index.exists():
            raise CorpusError(f"{index} is missing; prepare the corpus first")
        data = json.loads(index.read_text())
        return cls(cache_dir, [CorpusTrack(**t) for t in data["tracks"]])

    def split(self, name: str) -> list[CorpusTrack]:
        return [t for t in self.tracks if t.split == name]

    def wave_path(self, track: CorpusTrack) -> Path:
        return track.wave_path(self.cache_dir)

    def waveform(self, track: CorpusTrack) -> npt.NDArray[np.float16]:
        """``(samples,)`` float16, memory-mapped."""
        wave: npt.NDArray[np.float16] = np.load(self.wave_path(track), mmap_mode="r")
        return wave

    def hours(self, split: str | None = None) -> float:
        return sum(t.duration_s for t in self.tracks if split in (None, t.split)) / 3600

    def summary(self) -> dict[str, object]:
        """Hours and track counts, per split and per package."""
        packages = sorted({t.package for t in self.tracks})
        return {
            "hours": round(self.hours(), 3),
            "splits": {s: {"tracks": len(self.split(s)), "hours": round(self.hours(s), 3)} for s in SPLITS},
            "packages": {
                p: {s: sum(1 for t in self.tracks if t.package == p and t.split == s) for s in SPLITS}
                for p in packages
            },
        }


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (a killed run never leaves a half-written cache file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def read_index(cache_dir: Path) -> dict[str, object] | None:
    """``CACHE/index.json`` as written by :func:`prepare`, or None before the first run."""
    path = cache_dir / "index.json"
    return json.loads(path.read_text()) if path.exists() else None


def mix_tracks(cache_dir: Path, tracks: Sequence[CorpusTrack], per_track: int, seed: int) -> list[CorpusTrack]:
    """``per_track`` mixtures of each training track of ``tracks`` (written to ``cache_dir`` once).

    Mixture ``c`` of track ``a``: ``(a + g * b') / (1 + g)``, where ``b`` is another training track drawn at
    random, ``b'`` is ``b`` looped from a random offset to ``a``'s length and ``g`` is drawn from
    ``MIX_GAIN_DB``. Every draw depends only on ``(seed, c)`` and the training tracks' names, so the mixtures
    (and their names) are the same on every machine.
    """
    train = sorted((t for t in tracks if t.split == "train"), key=lambda t: t.track_id)
    if len(train) < 2:
        return []
    mixes: list[CorpusTrack] = []
    for copy in range(per_track):
        rng = np.random.default_rng([seed, 0x6D6978, copy])
        partners = rng.integers(0, len(train) - 1, len(train))
        gains = 10.0 ** (rng.uniform(*MIX_GAIN_DB, len(train)) / 20.0)
        offsets = rng.random(len(train))
        for i, first in enumerate(train):
            second = train[partners[i] + (partners[i] >= i)]  # any training track but the first
            mix = CorpusTrack(f"{MIX_PACKAGE}/{copy}/{first.track_id}+{second.track_id}", MIX_PACKAGE,
                              first.samples, "train")
            path = mix.wave_path(cache_dir)
            if not path.exists():
                a = np.load(first.wave_path(cache_dir)).astype(np.float32)
                b = np.load(second.wave_path(cache_dir)).astype(np.float32)
                looped = np.resize(np.roll(b, -int(offsets[i] * len(b))), len(a))
                _save_npy(path, ((a + gains[i] * looped) / (1 + gains[i])).astype(np.float16))
            mixes.append(mix)
    return mixes


def prepare(audio_dir: Path, cache_dir: Path, *, val_fraction: float = 0.15, seed: int = 0,
            held_apart: Sequence[str] = (), max_track_s: float | None = None, mixes: int = 0,
            on_track: Callable[[str], None] | None = None) -> Corpus:
    """Decode every track of ``audio_dir`` into ``cache_dir`` (once) and write the index with the split.

    Tracks of the ``held_apart`` packages get the split ``held_apart``; the others are split by track.
    ``max_track_s`` keeps the first seconds of each track; a cache decoded with another cap is refused.
    ``mixes`` > 0 adds that many mixtures per training track (:func:`mix_tracks`) to the training split.
    """
    previous = read_index(cache_dir)
    if previous is not None and previous.get("max_track_s") != max_track_s:
        raise CorpusError(f"{cache_dir} holds tracks capped at {previous.get('max_track_s')} s, not {max_track_s} s; "
                          "use another cache folder")
    unknown = sorted(set(held_apart) - set(TRAINING_PACKAGES))
    if unknown:
        raise CorpusError(f"held-apart packages {unknown} are not training packages")
    files = discover(audio_dir)
    split = split_by_track(((f"{pkg}/{path.name}", pkg) for pkg, path in files if pkg not in held_apart),
                           val_fraction, seed)
    split |= {f"{pkg}/{path.name}": "held_apart" for pkg, path in files if pkg in held_apart}
    tracks: list[CorpusTrack] = []
    for package, path in files:
        track_id = f"{package}/{path.name}"
        probe = CorpusTrack(track_id, package, 0, split[track_id])
        wave_path = probe.wave_path(cache_dir)
        if wave_path.exists():
            samples = int(np.load(wave_path, mmap_mode="r").shape[0])
        else:
            try:
                with path.open("rb") as fileobj:
                    wave, _ = decode_all(fileobj, max_duration_s=max_track_s, name=str(path))
            except TaggerError as exc:
                logger.warning("skipping %s: %s (%s)", track_id, exc, exc.kind)
                continue
            _save_npy(wave_path, wave.astype(np.float16))
            samples = len(wave)
        tracks.append(CorpusTrack(track_id, package, samples, split[track_id]))
        if on_track:
            on_track(track_id)
    tracks += mix_tracks(cache_dir, tracks, mixes, seed)
    index = {"audio_dir": str(audio_dir), "val_fraction": val_fraction, "seed": seed,
             "held_apart": sorted(held_apart), "max_track_s": max_track_s, "mixes": mixes,
             "tracks": [asdict(t) for t in tracks]}
    tmp = cache_dir / f"index.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(cache_dir / "index.json")
    return Corpus(cache_dir, tracks)
