"""Catalogue intelligence on a real corpus: the README's figures for `similar`, heads and scoring speed.

    python benchmarks/intelligence_bench.py --real-url postgresql://postgres@127.0.0.1:5432/intel_corpus \
        --vector-url postgresql://postgres@127.0.0.1:PORT/intel_corpus --out intelligence.json

``--real-url``: a database where a corpus of ``<package>/<track>`` files was tagged with musicnn-mtt and
samplecnn-mtt (``catalogue-tagger tag CORPUS --models musicnn-mtt,samplecnn-mtt``); its Postgres has no
pgvector (``real[]``). ``--vector-url``: a database on a server with pgvector (e.g. the embedded one); the
catalogue is copied there through the Store when it is empty. Measured:

1. precision@10 of ``similar`` by package (the track's folder) against the random baseline, per model and
   storage type;
2. recall@10 of the HNSW index against the exact scan (corpus, and 100,000 stored embeddings);
3. a head trained on the package labels: cross-validated ROC-AUC / PR-AUC per package;
4. the time to score 100,000 stored embeddings with a new head (in a scratch database on each server),
   against what re-decoding and re-tagging them would take at the measured tagging rate.

Not collected by pytest; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from catalogue_tagger.heads import train_head
from catalogue_tagger.labelsets import LabelRow, LabelSet
from catalogue_tagger.records import ModelOutput, ObjectInfo, TrackResult
from catalogue_tagger.similar import similar
from catalogue_tagger.store import intelligence as db
from catalogue_tagger.store.driver import scratch_database
from catalogue_tagger.store.queries import queries as sql_queries
from catalogue_tagger.store.store import Store

MODELS = ("musicnn-mtt", "samplecnn-mtt")
K = 10
N_SCORE = 100_000
MIN_PACKAGE = 5  # packages with fewer tracks are distractors only (no head label)


def package_of(uri: str) -> str:
    return Path(unquote(urlparse(uri).path)).parent.name


def tagged_uris(store: Store) -> list[str]:
    with store.connection() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT uri FROM tracks WHERE status = 'tagged' ORDER BY uri")]


def copy_catalogue(source: Store, target: Store) -> int:
    """Copy tracks, tags and embeddings of MODELS through the Store API (the target may store `vector`)."""
    with source.connection() as conn:
        tracks = conn.exec_driver_sql(
            "SELECT uri, etag, size_bytes, last_modified, duration_s FROM tracks WHERE status = 'tagged'").all()
    target.record_objects(ObjectInfo(t.uri, t.etag, t.size_bytes, t.last_modified) for t in tracks)
    models = {name: db.current_model(source, name) for name in MODELS}
    ids = {name: target.register_model(name, m.weights_sha256, m.labels, m.kind, m.embedding_dim) for name, m in models.items()}
    lease = target.open_run("copy", list(MODELS))
    run_id = lease.run_id
    durations = {t.uri: float(t.duration_s) for t in tracks}
    embeddings = {name: db.embeddings_for_uris(source, m.model_id, list(durations)) for name, m in models.items()}
    copied = 0
    while claimed := target.claim_pending(run_id, 64):
        results = []
        for task in claimed:
            outputs = []
            for name, m in models.items():
                rows = {r["tag"]: r for r in source.tags_for_track(task.uri, name)}
                mean = np.array([rows[label]["score"] for label in m.labels], dtype=np.float32)
                peak = np.array([rows[label]["score_max"] for label in m.labels], dtype=np.float32)
                outputs.append(ModelOutput(name, m.weights_sha256, 1, mean, peak, embeddings[name][task.uri]))
            results.append(TrackResult(task.track_id, task.uri, durations[task.uri], tuple(outputs)))
        target.write_results(results, ids)
        copied += len(results)
    target.finish_run(run_id, {"tagged": copied})
    lease.close()
    return copied


def precision_by_package(store: Store, model: str, exact: bool) -> dict[str, Any]:
    uris = tagged_uris(store)
    packages = {u: package_of(u) for u in uris}
    sizes = Counter(packages.values())
    per_package: dict[str, list[float]] = defaultdict(list)
    latencies = []
    for uri in uris:
        started = time.perf_counter()
        neighbours = similar(store, uri, model, K, exact=exact)
        latencies.append(time.perf_counter() - started)
        per_package[packages[uri]].append(sum(packages[n.uri] == packages[uri] for n in neighbours) / K)
    n = len(uris)
    rows = {
        p: {"tracks": sizes[p], "precision_at_10": float(np.mean(v)), "random": (sizes[p] - 1) / (n - 1)}
        for p, v in sorted(per_package.items())
    }
    return {
        "packages": rows,
        "mean_precision_at_10": float(np.mean([v for vs in per_package.values() for v in vs])),
        "mean_random": float(np.mean([(sizes[packages[u]] - 1) / (n - 1) for u in uris])),
        "median_query_ms": 1000 * float(np.median(latencies)),
    }


def recall_by_ef_search(store: Store, model: str, uris: list[str], ef_values: tuple[int, ...] = (128, 256, 512)) -> dict[str, Any]:
    """Recall@10 of the index vs the exact scan for several hnsw.ef_search values (the function raises it to at least 128)."""
    params = {"model": model, "top": K, "filter_tags": [], "filter_min": [], "filter_max": [], "tags_model": None}
    exact = {}
    for uri in uris:
        with store.engine.begin() as conn:
            exact[uri] = {r.uri for r in conn.execute(sql_queries()["similar_tracks"], {**params, "uri": uri, "exact": True})}
    out: dict[str, Any] = {}
    for ef in ef_values:
        recalls, times = [], []
        for uri in uris:
            with store.engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                started = time.perf_counter()
                got = {r.uri for r in conn.execute(sql_queries()["similar_tracks"], {**params, "uri": uri, "exact": False})}
                times.append(time.perf_counter() - started)
            recalls.append(len(got & exact[uri]) / len(exact[uri]))
        out[str(ef)] = {"recall_at_10": float(np.mean(recalls)), "min_recall_at_10": float(np.min(recalls)),
                        "queries_below_0.8": int(np.sum(np.array(recalls) < 0.8)), "median_ms": 1000 * float(np.median(times))}
    return out


def recall_index_vs_exact(store: Store, model: str, queries: list[str]) -> dict[str, float]:
    recalls, t_index, t_exact = [], [], []
    for uri in queries:
        started = time.perf_counter()
        indexed = {n.uri for n in similar(store, uri, model, K)}
        t_index.append(time.perf_counter() - started)
        started = time.perf_counter()
        exact = {n.uri for n in similar(store, uri, model, K, exact=True)}
        t_exact.append(time.perf_counter() - started)
        recalls.append(len(indexed & exact) / len(exact))
    return {"queries": len(queries), "recall_at_10": float(np.mean(recalls)), "min_recall_at_10": float(np.min(recalls)),
            "median_index_ms": 1000 * float(np.median(t_index)), "median_exact_ms": 1000 * float(np.median(t_exact))}


def package_labels(store: Store) -> LabelSet:
    uris = tagged_uris(store)
    sizes = Counter(package_of(u) for u in uris)
    return LabelSet(tuple(LabelRow(u, package_of(u), True) for u in uris if sizes[package_of(u)] >= MIN_PACKAGE),
                    "debian packages of the corpus")


def head_figures(store: Store, from_model: str) -> dict[str, Any]:
    report = train_head(store, package_labels(store), f"debian-package-{from_model}", from_model)
    return {
        "from_model": from_model,
        "labelled_tracks": report.n_tracks,
        "labels": {f.tag: {"positive": f.n_positive, "negative": f.n_negative, "cv_roc_auc": f.cv_roc_auc,
                           "cv_pr_auc": f.cv_pr_auc, "C": f.c} for f in report.fit.fits},
        "refused": report.fit.skipped,
        "macro_cv_roc_auc": float(np.mean([f.cv_roc_auc for f in report.fit.fits])),
        "macro_cv_pr_auc": float(np.mean([f.cv_pr_auc for f in report.fit.fits])),
    }


def corpus_embeddings(corpus: Store) -> tuple[Any, list[str], np.ndarray]:
    """The corpus's current musicnn-mtt version, its tagged tracks' uris (sorted) and their embeddings."""
    source = db.current_model(corpus, "musicnn-mtt")
    real = db.embeddings_for_uris(corpus, source.model_id, tagged_uris(corpus))
    base_uris = sorted(real)
    return source, base_uris, np.stack([real[u] for u in base_uris])


def load_noisy_copies(store: Store, source: Any, base_uris: list[str], base: np.ndarray, n: int,
                      rng: np.random.Generator, claim_chunk: int) -> list[str]:
    """Store n embeddings in ``store`` as tagged tracks: the corpus's real ones, then noisy copies of them
    (Gaussian, 0.3 of each dimension's spread, clipped at 0). Returns the uris, real ones first."""
    noise = 0.3 * base.std(axis=0)
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    uris = [*base_uris, *(f"bench://copy/{i:06d}/{package_of(base_uris[i % len(base_uris)])}/x.flac"
                          for i in range(n - len(base_uris)))]
    store.record_objects(ObjectInfo(u, "e", 1, when) for u in uris)
    model_id = store.register_model("musicnn-mtt", source.weights_sha256, (), "spectrogram", source.embedding_dim)
    empty = np.zeros(0, dtype=np.float32)
    index = {u: i for i, u in enumerate(uris)}
    with store.open_run("bench", ["musicnn-mtt"]) as lease:
        while claimed := store.claim_pending(lease.run_id, claim_chunk):
            results = []
            for task in claimed:
                i = index[task.uri]
                x = base[i % len(base_uris)]
                if i >= len(base_uris):
                    x = np.maximum(x + rng.normal(0, 1, x.shape).astype(np.float32) * noise, 0)
                results.append(TrackResult(task.track_id, task.uri, 1.0,
                                           (ModelOutput("musicnn-mtt", source.weights_sha256, 1, empty, empty, x),)))
            store.write_results(results, {"musicnn-mtt": model_id})
        store.finish_run(lease.run_id, {"tagged": n})
    return uris


def scoring_figures(corpus: Store, server_url: str, n: int, recall_queries: int, seed: int = 0) -> dict[str, Any]:
    """In a scratch database: n stored embeddings (the corpus's real ones, then noisy copies), a new head."""
    rng = np.random.default_rng(seed)
    source, base_uris, base = corpus_embeddings(corpus)
    with scratch_database(server_url, "ct_bench_heads") as url, Store.connect(url) as store:
        store.migrate()
        started = time.perf_counter()
        uris = load_noisy_copies(store, source, base_uris, base, n, rng, claim_chunk=2000)
        load_s = time.perf_counter() - started
        labels = LabelSet(tuple(r for r in package_labels(corpus).rows), "debian packages")
        report = train_head(store, labels, "bench-head", "musicnn-mtt")
        again_s = time.perf_counter()
        db.score_heads(store, head_id=report.model_id)  # everything unchanged: computes, writes nothing
        rescore_s = time.perf_counter() - again_s
        figures: dict[str, Any] = {
            "embedding_type": store.embedding_type,
            "stored_embeddings": n,
            "load_s": load_s,
            "head_labels": len(report.fit.fits),
            "scored_tracks": report.scored_tracks,
            "score_s": report.score_s,
            "rows_written": report.scored_tracks * len(report.fit.fits),
            "rescore_unchanged_s": rescore_s,
        }
        if store.embedding_type == "vector" and recall_queries:
            queries = random.Random(seed).sample(uris, recall_queries)
            figures["recall_100k"] = recall_index_vs_exact(store, "musicnn-mtt", queries)
            figures["recall_100k_by_ef_search"] = recall_by_ef_search(store, "musicnn-mtt", queries)
    return figures


def index_build_figures(corpus: Store, server_url: str, n: int, queries_n: int,
                        builds: tuple[tuple[int, int], ...] = ((16, 64), (32, 128)), seed: int = 0) -> dict[str, Any]:
    """Recall@10 on n stored embeddings for HNSW indexes built after loading with several (m, ef_construction)."""
    rng = np.random.default_rng(seed)
    source, base_uris, base = corpus_embeddings(corpus)
    out: dict[str, Any] = {}
    with scratch_database(server_url, "ct_bench_index") as url, Store.connect(url) as store:
        store.migrate()
        with store.engine.begin() as conn:  # load without the index, build it afterwards (as a bulk load would)
            conn.exec_driver_sql("DROP INDEX track_embeddings_hnsw_200_idx")
        uris = load_noisy_copies(store, source, base_uris, base, n, rng, claim_chunk=5000)
        queries = random.Random(seed).sample(uris, queries_n)
        for m, ef_construction in builds:
            with store.engine.begin() as conn:
                conn.exec_driver_sql("DROP INDEX IF EXISTS track_embeddings_hnsw_200_idx")
                started = time.perf_counter()
                conn.exec_driver_sql(
                    "CREATE INDEX track_embeddings_hnsw_200_idx ON track_embeddings USING hnsw "
                    f"((embedding::vector(200)) vector_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
                    "WHERE vector_dims(embedding) = 200")
                build_s = time.perf_counter() - started
            out[f"m={m},ef_construction={ef_construction}"] = {"build_s": build_s,
                                                               **recall_index_vs_exact(store, "musicnn-mtt", queries)}
            print(json.dumps(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-url", required=True)
    parser.add_argument("--vector-url", required=True)
    parser.add_argument("--out", default="intelligence.json")
    parser.add_argument("--n", type=int, default=N_SCORE)
    parser.add_argument("--recall-queries", type=int, default=100)
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--only-scoring", action="store_true", help="Only the 100,000-embedding scoring figures.")
    parser.add_argument("--only-vector", action="store_true", help="With --only-scoring: the pgvector server only.")
    parser.add_argument("--index-builds", action="store_true", help="Only: recall of HNSW indexes built after a bulk load.")
    args = parser.parse_args()
    out: dict[str, Any] = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                      text=True).stdout.strip()}
    with Store.connect(args.real_url) as real, Store.connect(args.vector_url) as vector:
        real.migrate()
        vector.migrate()
        assert real.embedding_type == "real[]" and vector.embedding_type == "vector"
        if not tagged_uris(vector):
            out["copied_to_vector"] = copy_catalogue(real, vector)
        if args.index_builds:
            out["index_builds"] = index_build_figures(real, args.vector_url, args.n, args.recall_queries)
            Path(args.out).write_text(json.dumps(out, indent=2, default=str))
            return
        if args.only_scoring:
            out["scoring"] = {
                "real[]": scoring_figures(real, args.real_url, args.n, 0) if not args.only_vector else {},
                "vector": scoring_figures(real, args.vector_url, args.n, args.recall_queries),
            }
            print(json.dumps(out["scoring"]))
            Path(args.out).write_text(json.dumps(out, indent=2, default=str))
            return
        with real.connection() as conn:
            stats = conn.exec_driver_sql("SELECT stats FROM runs WHERE status = 'completed' ORDER BY run_id LIMIT 1").scalar_one()
            durations = conn.exec_driver_sql("SELECT count(*), sum(duration_s) FROM tracks WHERE status = 'tagged'").one()
        out["corpus"] = {"tracks": durations[0], "audio_h": float(durations[1]) / 3600,
                         "packages": dict(Counter(package_of(u) for u in tagged_uris(real))), "tag_run": stats}
        out["similar"] = {}
        for model in MODELS:
            out["similar"][model] = {
                "real[] exact": precision_by_package(real, model, exact=True),
                "vector hnsw": precision_by_package(vector, model, exact=False),
                "recall_corpus": recall_index_vs_exact(vector, model, tagged_uris(vector)),
            }
            print(model, json.dumps({k: v.get("mean_precision_at_10", v.get("recall_at_10")) for k, v in out["similar"][model].items()}))
        out["heads"] = {model: head_figures(real, model) for model in MODELS}
        print(json.dumps({m: (h["macro_cv_roc_auc"], h["macro_cv_pr_auc"]) for m, h in out["heads"].items()}))
        if not args.skip_scoring:
            out["scoring"] = {
                "real[]": scoring_figures(real, args.real_url, args.n, 0),
                "vector": scoring_figures(real, args.vector_url, args.n, args.recall_queries),
            }
            print(json.dumps(out["scoring"]))
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
