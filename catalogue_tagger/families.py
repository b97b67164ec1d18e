"""Tag families and plain-words queries over the shipped vocabularies.

The grouping itself is data in the database (``tag_vocabulary``: every MagnaTagATune and Million Song
Dataset label with its canonical tag and family; the ``track_families`` view merges synonyms). Here:
turning a user's words ("calm female piano") into canonical tags — phrases first, then single words,
through the canonical names and a small table of everyday synonyms — and ranking tracks by them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from catalogue_tagger.errors import InvalidQuery
from catalogue_tagger.store import intelligence as db
from catalogue_tagger.store.store import Store

FAMILIES = ("genre", "mood", "instrument", "vocals", "era/other")
FAMILY_ALIASES = {"era": "era/other", "other": "era/other", "instruments": "instrument", "moods": "mood",
                  "genres": "genre", "vocal": "vocals", "voice": "vocals"}

#: everyday words → canonical tags (of tag_vocabulary); canonical names and raw labels match by themselves
WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("soft", "mellow", "chill"),
    "relaxing": ("soft", "mellow", "chill"),
    "relaxed": ("soft", "mellow", "chill"),
    "peaceful": ("soft", "mellow", "chill"),
    "gentle": ("soft",),
    "mellow": ("mellow",),
    "energetic": ("fast", "loud"),
    "upbeat": ("happy", "fast"),
    "cheerful": ("happy",),
    "melancholic": ("sad",),
    "melancholy": ("sad",),
    "dark": ("sad",),
    "strange": ("weird",),
    "female": ("female vocals",),
    "woman": ("female vocals",),
    "women": ("female vocals",),
    "girl": ("female vocals",),
    "male": ("male vocals",),
    "man": ("male vocals",),
    "men": ("male vocals",),
    "singer": ("vocals",),
    "singing": ("vocals",),
    "sung": ("vocals",),
    "voice": ("vocals",),
    "vocal": ("vocals",),
    "instrumental": ("no vocals",),
    "choral": ("choir",),
    "orchestral": ("classical", "strings"),
    "orchestra": ("classical", "strings"),
    "symphonic": ("classical", "strings"),
    "electronica": ("electronic",),
    "edm": ("electronic", "dance"),
    "synthesizer": ("synth",),
    "keyboard": ("piano", "synth"),
    "percussion": ("drums", "beats"),
    "drum": ("drums",),
    "guitars": ("guitar",),
    "strings": ("strings",),
    "violins": ("violin",),
    "hiphop": ("hip-hop",),
    "rap": ("hip-hop",),
    "r&b": ("rnb",),
    "classic": ("classical",),
}
STOP_WORDS = {"a", "an", "and", "the", "with", "of", "some", "music", "song", "songs", "track", "tracks", "like",
              "very", "quite", "bit", "in", "for", "by", "sounding", "that", "is"}
_TOKEN = re.compile(r"[a-z0-9&'-]+")


def normalize_family(family: str) -> str:
    name = family.strip().lower()
    name = FAMILY_ALIASES.get(name, name)
    if name not in FAMILIES:
        raise InvalidQuery(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    return name


@dataclass(frozen=True)
class Term:
    """A piece of the user's text and the canonical tags it stands for (empty: not understood)."""

    text: str
    tags: tuple[str, ...]


def parse_text(text: str, vocabulary: list[tuple[str, str, str]]) -> list[Term]:
    """Split ``text`` into terms, longest phrase first (up to three words), each mapped to canonical tags.

    ``vocabulary``: ``(tag, canonical, family)`` rows; a word matches a canonical tag, a raw label (its
    canonical), or :data:`WORDS`. Stop words are dropped; an unknown word becomes a term with no tags.
    """
    phrases: dict[str, tuple[str, ...]] = {}
    for tag, canonical, _family in vocabulary:
        phrases[tag.lower()] = (canonical,)
        phrases[canonical.lower()] = (canonical,)
    for word, tags in WORDS.items():
        phrases.setdefault(word, tags)
    words = _TOKEN.findall(text.lower().replace("hip hop", "hip-hop").replace("new-age", "new age"))
    terms: list[Term] = []
    i = 0
    while i < len(words):
        for n in (3, 2, 1):
            phrase = " ".join(words[i : i + n])
            if len(words[i : i + n]) == n and phrase in phrases:
                terms.append(Term(phrase, phrases[phrase]))
                i += n
                break
        else:
            if words[i] not in STOP_WORDS:
                singular = words[i][:-1] if words[i].endswith("s") else words[i]
                terms.append(Term(words[i], phrases.get(singular, ())))
            i += 1
    return terms


@dataclass(frozen=True)
class TextMatch:
    terms: tuple[Term, ...]  # only the tags the chosen model(s) can score
    unmatched: tuple[str, ...]  # words that map onto nothing scorable
    tracks: tuple[tuple[str, float, tuple[float, ...]], ...]  # uri, score, per-term scores


def rank_by_text(store: Store, text: str, model: str | None = None, top: int = 10) -> TextMatch:
    """Tracks ranked by the geometric mean of the matched terms' scores (each term: its best synonym)."""
    available = db.available_canonical_tags(store, model)
    terms: list[Term] = []
    unmatched: list[str] = []
    for term in parse_text(text, db.vocabulary(store)):
        tags = tuple(t for t in term.tags if t in available)
        if tags:
            terms.append(Term(term.text, tags))
        else:
            unmatched.append(term.text)
    if not terms:
        raise InvalidQuery(f"no word of {text!r} matches a tag the stored models can score")
    ranked = db.rank_tracks_by_terms(store, [t.tags for t in terms], model, top)
    return TextMatch(tuple(terms), tuple(unmatched), tuple((u, s, tuple(ts)) for u, s, ts in ranked))


def top_by_family(store: Store, family: str, model: str | None = None, top: int = 10) -> list[dict[str, object]]:
    """Tracks by their strongest tag of ``family`` (synonyms merged)."""
    return list(db.top_tracks_by_family(store, normalize_family(family), model, top))
