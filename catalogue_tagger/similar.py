"""Tracks like this one: nearest stored embeddings, with tag filters applied inside the same scan.

The database does the work (``similar_tracks`` in schema.sql): pgvector's HNSW index with an iterative
scan where embeddings are ``vector``, an exact cosine scan over ``real[]`` otherwise. Here: parsing the
user's filters (``piano>=0.3``, ``vocals<0.2``, ``0.2<=slow<=0.6``) and naming the result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from catalogue_tagger.errors import InvalidQuery
from catalogue_tagger.store import intelligence as db
from catalogue_tagger.store.store import Store

_NUMBER = r"[0-9]*\.?[0-9]+"
_ONE_SIDED = re.compile(rf"^\s*(?P<tag>[^<>=]+?)\s*(?P<op>>=|<=|>|<)\s*(?P<value>{_NUMBER})\s*$")
_RANGE = re.compile(rf"^\s*(?P<lo>{_NUMBER})\s*<=?\s*(?P<tag>[^<>=]+?)\s*<=?\s*(?P<hi>{_NUMBER})\s*$")


@dataclass(frozen=True)
class TagFilter:
    """Keep tracks whose score for ``tag`` lies in [lo, hi] (None: unbounded)."""

    tag: str
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Neighbour:
    uri: str
    model: str
    distance: float  # cosine distance, 0 = same direction


def parse_filter(text: str) -> TagFilter:
    """``TAG>=X``, ``TAG>X``, ``TAG<=X``, ``TAG<X`` or ``LO<=TAG<=HI`` (scores in [0, 1])."""
    if match := _RANGE.match(text):
        return TagFilter(match["tag"], float(match["lo"]), float(match["hi"]))
    if match := _ONE_SIDED.match(text):
        value = float(match["value"])
        if match["op"].startswith(">"):
            return TagFilter(match["tag"], lo=value)
        return TagFilter(match["tag"], hi=value)
    raise InvalidQuery(f"filter {text!r}: use TAG>=X, TAG<=X or LO<=TAG<=HI (e.g. 'piano>=0.3')")


def similar(
    store: Store,
    uri: str,
    model: str = "musicnn-mtt",
    top: int = 10,
    filters: Sequence[TagFilter] = (),
    *,
    tags_model: str | None = None,
    exact: bool = False,
) -> list[Neighbour]:
    """The ``top`` tracks nearest to ``uri`` by ``model``'s embedding (the track itself excluded).

    Filter tags are scores of ``tags_model`` (default: ``model``); ``exact`` forces the exact scan.
    """
    if top < 1:
        raise InvalidQuery("top must be at least 1")
    rows = db.similar_tracks(
        store,
        uri,
        model,
        top,
        [(f.tag, f.lo, f.hi) for f in filters],
        tags_model=tags_model,
        exact=exact,
    )
    return [Neighbour(u, m, d) for u, m, d in rows]
