"""Reads and writes of catalogue intelligence: similar tracks, heads, thresholds, families, report figures.

Every statement is named in ``sql/queries.sql``; driver errors become :class:`StoreError` (via
:func:`store_errors`). Functions take the :class:`Store` whose engine they use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from catalogue_tagger.errors import StoreError, UnknownModel, UnknownTrack
from catalogue_tagger.store.driver import copy_out_id_vectors, copy_rows, run_script, store_errors
from catalogue_tagger.store.queries import queries, raw_queries
from catalogue_tagger.store.store import Store


@dataclass(frozen=True)
class StoredModel:
    """The current version of a model name, as the database knows it."""

    model_id: int
    name: str
    weights_sha256: str
    labels: tuple[str, ...]
    kind: str
    embedding_dim: int | None


def _all(store: Store, name: str, params: Mapping[str, Any] | None = None) -> list[Any]:
    with store_errors(name.replace("_", " ")), store.engine.connect() as conn:
        return list(conn.execute(queries()[name], dict(params or {})).all())


def current_model(store: Store, name: str) -> StoredModel:
    """The current version of ``name``; :class:`UnknownModel` if the database has none."""
    rows = _all(store, "current_model", {"name": name})
    if not rows:
        raise UnknownModel(f"no model {name!r} in the database (tag with it, or train a head of that name, first)")
    r = rows[0]
    return StoredModel(r.model_id, r.name, r.weights_sha256, tuple(r.labels), r.kind, r.embedding_dim)


# --- similar tracks ----------------------------------------------------------------------------------
def similar_tracks(
    store: Store,
    uri: str,
    model: str,
    top: int,
    filters: Sequence[tuple[str, float | None, float | None]] = (),
    tags_model: str | None = None,
    exact: bool = False,
) -> list[tuple[str, str, float]]:
    """``(uri, model, distance)`` of the ``top`` tracks nearest to ``uri``; named errors for bad input."""
    stored = current_model(store, model)
    if stored.embedding_dim is None:
        raise UnknownModel(f"model {model!r} stores no embeddings; use one that does (e.g. musicnn-mtt)")
    if tags_model is not None:
        current_model(store, tags_model)
    state = _all(store, "track_embedding_state", {"uri": uri, "model_id": stored.model_id})
    if not state:
        raise UnknownTrack(f"no track {uri!r} in the database")
    if not state[0].has_embedding:
        raise UnknownTrack(f"track {uri!r} ({state[0].status}) has no {model} embedding")
    params = {
        "uri": uri,
        "model": model,
        "top": top,
        "filter_tags": [f[0] for f in filters],
        "filter_min": [f[1] for f in filters],
        "filter_max": [f[2] for f in filters],
        "tags_model": tags_model,
        "exact": exact,
    }
    with store_errors("similar tracks"), store.engine.begin() as conn:  # hnsw settings are transaction-local
        rows = conn.execute(queries()["similar_tracks"], params).all()
    return [(r.uri, r.model, float(r.distance)) for r in rows]


# --- embeddings and scores of labelled tracks --------------------------------------------------------
def embeddings_for_uris(store: Store, model_id: int, uris: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
    """Stored embeddings of tagged tracks among ``uris`` (missing ones are absent from the result)."""
    rows = _all(store, "embeddings_for_uris", {"model_id": model_id, "uris": list(uris)})
    return {r.uri: np.asarray(r.embedding, dtype=np.float32) for r in rows}


def scores_for_uris(store: Store, model_id: int, uris: Sequence[str], tags: Sequence[str]) -> dict[tuple[str, str], float]:
    """``{(uri, tag): score}`` of one model version for the given tracks and tags."""
    rows = _all(store, "scores_for_uris", {"model_id": model_id, "uris": list(uris), "tags": list(tags)})
    return {(r.uri, r.tag): float(r.score) for r in rows}


# --- heads -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadLabelRow:
    tag: str
    weights: npt.NDArray[np.float32]  # (embedding_dim,) on the raw embedding
    bias: float
    l2: float
    n_positive: int
    n_negative: int
    cv_roc_auc: float | None
    cv_pr_auc: float | None


def save_head(
    store: Store,
    name: str,
    weights_sha256: str,
    source_model: StoredModel,
    labels_source: str,
    rows: Sequence[HeadLabelRow],
) -> int:
    """Register the head as a model version (kind ``head``) with its weights, in one transaction; its id."""
    model_params = {
        "name": name,
        "weights_sha256": weights_sha256,
        "labels": [r.tag for r in rows],
        "kind": "head",
        "embedding_dim": None,
        "precision": "fp32",  # heads are fitted and scored in float64/float32 by numpy
    }
    with store_errors(f"save head {name}"), store.engine.begin() as conn:
        model_id = int(conn.execute(queries()["upsert_model"], model_params).scalar_one())
        conn.execute(
            queries()["insert_head"],
            {"model_id": model_id, "source_model_id": source_model.model_id, "labels_source": labels_source},
        )
        for r in rows:
            conn.execute(
                queries()["insert_head_label"],
                {
                    "model_id": model_id,
                    "tag": r.tag,
                    "weights": [float(w) for w in r.weights],
                    "bias": r.bias,
                    "l2": r.l2,
                    "n_positive": r.n_positive,
                    "n_negative": r.n_negative,
                    "cv_roc_auc": r.cv_roc_auc,
                    "cv_pr_auc": r.cv_pr_auc,
                },
            )
    return model_id


SCORE_PAGE = 20_000  # embeddings per transaction when heads score (≈ 16 MB of 200-d float32)


def score_heads(
    store: Store, head_id: int | None = None, run_id: int | None = None, page: int = SCORE_PAGE
) -> tuple[int, int]:
    """Score tracks with one head version (or every current head) from stored embeddings; (rows written,
    tracks read). ``run_id``: only the tracks that run tagged, plus any the head never scored.

    Embeddings are read a page at a time by binary COPY, scored with numpy (``sigmoid(X @ W.T + b)``),
    staged by COPY and merged; unchanged scores are not rewritten.
    """
    written = tracks = 0
    for head in _all(store, "heads_to_score", {"head_id": head_id}):
        labels = list(head.labels)
        rows = {r.tag: r for r in _all(store, "head_label_weights", {"model_id": head.model_id})}
        weights = np.stack([np.asarray(rows[t].weights, dtype=np.float64) for t in labels])  # (labels, dim)
        bias = np.array([rows[t].bias for t in labels], dtype=np.float64)
        after = 0
        while True:
            params = {"source_model_id": head.source_model_id, "dim": head.embedding_dim, "after": after,
                      "run_id": run_id, "head_id": head.model_id, "page": page}
            with store_errors(f"score head {head.model_id}"), store.engine.begin() as conn:
                ids, x = copy_out_id_vectors(conn, queries()["embeddings_to_score"], params, head.embedding_dim)
                if ids.size == 0:
                    break
                z = np.clip(x.astype(np.float64) @ weights.T + bias, -50.0, 50.0)
                scores = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)  # (page, labels)
                run_script(conn, raw_queries()["create_stage_head_scores"])
                copy_rows(conn, "stage_head_scores", ("track_id", "model_id", "score"),
                          ((int(i), head.model_id, s) for i, s in zip(ids, scores)), types=("int8", "int4", "float4[]"))
                written += int(conn.execute(queries()["merge_head_scores_from_stage"]).scalar_one())
            tracks += int(ids.size)
            after = int(ids[-1])
    return written, tracks


def list_heads(store: Store) -> list[dict[str, Any]]:
    """One dict per (head version, label), newest head first."""
    return [
        {
            "model_id": r.model_id,
            "name": r.name,
            "current": bool(r.current),
            "source_model": r.source_model,
            "labels_source": r.labels_source,
            "weights_sha256": r.weights_sha256,
            "created_at": r.created_at.isoformat(),
            "tag": r.tag,
            "n_positive": r.n_positive,
            "n_negative": r.n_negative,
            "cv_roc_auc": r.cv_roc_auc,
            "cv_pr_auc": r.cv_pr_auc,
            "l2": r.l2,
        }
        for r in _all(store, "list_heads")
    ]


# --- thresholds --------------------------------------------------------------------------------------
def save_thresholds(store: Store, model_id: int, thresholds: Sequence[Mapping[str, Any]], source: str) -> None:
    """Store calibrated operating points (dicts with the tag_thresholds columns) of one model version."""
    with store_errors("save thresholds"), store.engine.begin() as conn:
        for t in thresholds:
            conn.execute(queries()["upsert_tag_threshold"], {**t, "model_id": model_id, "source": source})


def labels_for_track(store: Store, uri: str) -> list[dict[str, Any]]:
    return [{"model": r.model, "tag": r.tag, "label": r.label} for r in _all(store, "labels_for_track", {"uri": uri})]


# --- families and plain-words queries ---------------------------------------------------------------
def vocabulary(store: Store) -> list[tuple[str, str, str]]:
    """``(tag, canonical, family)`` of every shipped label."""
    return [(r.tag, r.canonical, r.family) for r in _all(store, "tag_vocabulary")]


def available_canonical_tags(store: Store, model: str | None) -> dict[str, str]:
    """``{canonical tag: family}`` that the current models (or ``model``) can score."""
    return {r.canonical: r.family for r in _all(store, "available_canonical_tags", {"model": model})}


def top_tracks_by_family(store: Store, family: str, model: str | None, top: int) -> list[dict[str, Any]]:
    rows = _all(store, "top_tracks_by_family", {"family": family, "model": model, "top": top})
    return [{"uri": r.uri, "model": r.model, "tag": r.tag, "score": float(r.score)} for r in rows]


def rank_tracks_by_terms(
    store: Store, terms: Sequence[Sequence[str]], model: str | None, top: int
) -> list[tuple[str, float, list[float]]]:
    """Tracks by the geometric mean of per-term scores; each term is a set of canonical tags."""
    flat = [(i, tag) for i, tags in enumerate(terms) for tag in tags]
    params = {"terms": [i for i, _ in flat], "canonicals": [t for _, t in flat], "model": model, "top": top}
    rows = _all(store, "rank_tracks_by_terms", params)
    return [(r.uri, float(r.score), [float(s) for s in r.term_scores]) for r in rows]


# --- catalogue report --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogueReport:
    """What ``catalogue-tagger report`` shows, read in one go."""

    counts: dict[str, float]
    prevalence: list[tuple[str, str, float, float]]  # model, tag, mean score, share >= cut
    histogram: dict[str, list[int]]  # model -> counts per bin
    failures: dict[str, int]
    runs: list[dict[str, Any]]
    cut: float
    bins: int


def catalogue_report(store: Store, cut: float = 0.5, bins: int = 20) -> CatalogueReport:
    counts_row = _all(store, "catalogue_counts")[0]
    counts = {k: float(getattr(counts_row, k)) for k in ("total", "tagged", "failed", "pending", "tagged_hours")}
    prevalence = [(r.model, r.tag, float(r.mean_score), float(r.share_above)) for r in _all(store, "tag_prevalence", {"cut": cut})]
    histogram: dict[str, list[int]] = {}
    for r in _all(store, "score_histogram", {"bins": bins}):
        histogram.setdefault(r.model, [0] * bins)[int(r.bin) - 1] += int(r.n)
    runs = []
    for r in _all(store, "run_history"):
        stats = r.stats if isinstance(r.stats, dict) else json.loads(r.stats or "{}")
        runs.append(
            {
                "run_id": r.run_id,
                "started_at": r.started_at.isoformat(),
                "status": r.status,
                "models": list(r.models),
                "tagged": stats.get("tagged", 0),
                "audio_s": stats.get("audio_s", 0.0),
                "wall_s": stats.get("wall_s", 0.0),
                "xrealtime": stats.get("xrealtime", 0.0),
            }
        )
    failures = store.failures_by_kind()
    return CatalogueReport(counts, prevalence, histogram, failures, runs, cut, bins)


__all__ = [
    "CatalogueReport",
    "HeadLabelRow",
    "StoreError",
    "StoredModel",
    "available_canonical_tags",
    "catalogue_report",
    "current_model",
    "embeddings_for_uris",
    "labels_for_track",
    "list_heads",
    "rank_tracks_by_terms",
    "save_head",
    "save_thresholds",
    "score_heads",
    "scores_for_uris",
    "similar_tracks",
    "top_tracks_by_family",
    "vocabulary",
]
