"""Catalogue intelligence end to end on real audio in real Postgres: similar tracks (``vector`` with HNSW on
the embedded server, ``real[]`` on the main one), heads trained on the tracks' Debian package, calibrated
yes/no labels, tag families and plain-words queries, catalogue figures.

The catalogue: the four bundled demo excerpts (two from the ``nexuiz-music`` package, two from
``wesnoth-music``) cut into 7 s pieces — six pieces per package — plus two unlabelled musicnn reference
clips, tagged once per database with musicnn-mtt and samplecnn-mtt.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from sqlalchemy import text

from catalogue_tagger.cli import main
from catalogue_tagger.decode import decode_all
from catalogue_tagger.errors import TooFewLabels, UnknownTrack
from catalogue_tagger.heads import train_head
from catalogue_tagger.labelsets import LabelRow, LabelSet
from catalogue_tagger.models.labels import MSD_LABELS, MTT_LABELS
from catalogue_tagger.config import Settings
from catalogue_tagger.pipeline import tag
from catalogue_tagger.similar import TagFilter, similar
from catalogue_tagger.sources import FolderStore
from catalogue_tagger.store import intelligence as db
from catalogue_tagger.store.queries import queries
from catalogue_tagger.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "catalogue_tagger" / "demo"
MUSICNN_CLIPS = ROOT / "tests" / "fixtures" / "musicnn"
PIECE_S = 7.0
MODELS = ("musicnn-mtt", "samplecnn-mtt")


@dataclass(frozen=True)
class Catalogue:
    store: Store
    url: str
    folder: Path
    package: dict[str, str]  # uri -> Debian package, for the labelled pieces


def _cut_pieces(folder: Path) -> dict[Path, str]:
    pieces: dict[Path, str] = {}
    for mp3 in sorted(DEMO.glob("*.mp3")):
        package = mp3.name.split("-")[0]
        with mp3.open("rb") as handle:
            wave, _ = decode_all(handle)
        n = int(PIECE_S * 16000)
        for k in range(len(wave) // n):
            path = folder / package / f"{mp3.stem}-{k}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, wave[k * n : (k + 1) * n], 16000, format="FLAC")
            pieces[path] = package
    for clip in ("pub_electronic_2.flac", "pub_speech.flac"):
        (folder / "unlabelled").mkdir(exist_ok=True)
        shutil.copy2(MUSICNN_CLIPS / clip, folder / "unlabelled" / clip)
    return pieces


def _tagged_catalogue(url: str, tmp: Path) -> Iterator[Catalogue]:
    folder = tmp / "catalogue"
    pieces = _cut_pieces(folder)
    with Store.connect(url) as store:
        store.migrate()
        report = tag(FolderStore(folder), store, Settings(models=MODELS, workers=0, batch_size=16))
        assert report.tagged == len(pieces) + 2 and not report.failed
        yield Catalogue(store, url, folder, {p.as_uri(): pkg for p, pkg in pieces.items()})


@pytest.fixture(scope="module")
def real_array_catalogue(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    """On the main server (Postgres without pgvector in CI: embeddings as real[])."""
    yield from _tagged_catalogue(database_factory(), tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def vector_catalogue(embedded_database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    """On the embedded server (pgvector: embeddings as vector, HNSW indexes)."""
    yield from _tagged_catalogue(embedded_database_factory(), tmp_path_factory.mktemp("vector"))


@pytest.fixture(params=["real[]", "vector"])
def catalogue(request: pytest.FixtureRequest) -> Catalogue:
    fixture = "real_array_catalogue" if request.param == "real[]" else "vector_catalogue"
    cat: Catalogue = request.getfixturevalue(fixture)
    if request.param == "vector":
        assert cat.store.embedding_type == "vector"
    return cat


def _package_labels(cat: Catalogue) -> LabelSet:
    return LabelSet(tuple(LabelRow(uri, pkg, True) for uri, pkg in sorted(cat.package.items())), "packages")


# --- similar -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_similar_puts_the_same_package_first(catalogue: Catalogue, model: str) -> None:
    hits, total = 0, 0
    for uri, package in catalogue.package.items():
        neighbours = similar(catalogue.store, uri, model, top=3)
        assert len(neighbours) == 3 and uri not in {n.uri for n in neighbours}
        assert [n.distance for n in neighbours] == sorted(n.distance for n in neighbours)
        hits += sum(catalogue.package.get(n.uri) == package for n in neighbours)
        total += len(neighbours)
    chance = 5 / 13  # five other pieces of the same package among the 13 other tracks
    assert hits / total > chance + 0.25, f"precision@3 {hits / total:.2f} vs chance {chance:.2f}"


@pytest.mark.parametrize("model", MODELS)
def test_index_answers_like_the_exact_scan(catalogue: Catalogue, model: str) -> None:
    for uri in catalogue.package:
        indexed = similar(catalogue.store, uri, model, top=10)
        exact = similar(catalogue.store, uri, model, top=10, exact=True)
        assert len({n.uri for n in indexed} & {n.uri for n in exact}) / 10 >= 0.95
        assert np.allclose([n.distance for n in indexed], [n.distance for n in exact], atol=1e-5)


def test_vector_search_walks_the_hnsw_index(vector_catalogue: Catalogue) -> None:
    uri = next(iter(vector_catalogue.package))
    stats = text("SELECT pg_stat_get_xact_numscans(CAST(:name AS regclass))")  # index scans in this transaction
    params = {"uri": uri, "top": 5, "filter_tags": [], "filter_min": [], "filter_max": [], "tags_model": None}
    for model, index in (("musicnn-mtt", "track_embeddings_hnsw_200_idx"), ("samplecnn-mtt", "track_embeddings_hnsw_512_idx")):
        for exact, expect_scan in ((True, False), (False, True)):
            with vector_catalogue.store.engine.begin() as conn:
                # 14 rows: left alone the planner rightly prefers scan-and-sort; forbidding both, only an
                # index whose expression and predicate match the query can give the order
                conn.execute(text("SET LOCAL enable_seqscan = off"))
                conn.execute(text("SET LOCAL enable_sort = off"))
                rows = conn.execute(queries()["similar_tracks"], {**params, "model": model, "exact": exact}).all()
                scans = conn.execute(stats, {"name": index}).scalar_one()
            assert len(rows) == 5
            assert (scans > 0) == expect_scan, (model, exact, scans)


def test_filters_apply_inside_the_search(catalogue: Catalogue) -> None:
    uri = next(u for u, p in catalogue.package.items() if p == "nexuiz")
    everything = similar(catalogue.store, uri, top=13, exact=True)
    scores = {
        n.uri: {row["tag"]: row["score"] for row in catalogue.store.tags_for_track(n.uri, "musicnn-mtt")} for n in everything
    }
    cut = float(np.median([s["electronic"] for s in scores.values()]))
    wanted = [n.uri for n in everything if scores[n.uri]["electronic"] >= cut][:4]
    for exact in (True, False):
        filtered = similar(catalogue.store, uri, top=4, filters=[TagFilter("electronic", lo=cut)], exact=exact)
        assert [n.uri for n in filtered] == wanted
    none = similar(catalogue.store, uri, top=4, filters=[TagFilter("electronic", lo=cut), TagFilter("electronic", hi=cut / 2)])
    assert none == []


def test_similar_names_what_is_missing(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownTrack):
        similar(catalogue.store, "file:///nowhere.flac")


def test_similar_command(catalogue: Catalogue) -> None:
    uri = next(iter(catalogue.package))
    result = CliRunner().invoke(main, ["similar", uri, "--top", "3", "--where", "guitar<=1", "--format", "json",
                                       "--database-url", catalogue.url])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(lines) == 3 and all(set(line) == {"uri", "model", "distance"} for line in lines)
    bad = CliRunner().invoke(main, ["similar", uri, "--where", "guitar is loud", "--database-url", catalogue.url])
    assert bad.exit_code == 2 and "invalid_query" in bad.output


# --- heads and calibration ---------------------------------------------------------------------------
def test_head_learns_the_package_from_stored_embeddings(catalogue: Catalogue) -> None:
    cat = catalogue
    report = train_head(cat.store, _package_labels(cat), "package")
    assert {f.tag for f in report.fit.fits} == {"nexuiz", "wesnoth"} and not report.fit.skipped
    for fit in report.fit.fits:
        assert fit.n_positive == 6 and fit.n_negative == 6
        assert fit.cv_roc_auc >= 0.9 and fit.cv_pr_auc >= 0.9, fit
    # the database scores every tagged track (labelled or not) as sigmoid(bias + weights · embedding)
    assert report.scored_tracks == len(cat.package) + 2
    source = db.current_model(cat.store, "musicnn-mtt")
    with cat.store.connection() as conn:
        uris = [r[0] for r in conn.execute(text("SELECT uri FROM tracks WHERE status = 'tagged'"))]
    embeddings = db.embeddings_for_uris(cat.store, source.model_id, uris)
    for uri, x in embeddings.items():
        stored = {r["tag"]: r["score"] for r in cat.store.tags_for_track(uri, "package")}
        for fit in report.fit.fits:
            expected = 1 / (1 + np.exp(-(fit.bias + float(np.dot(fit.weights, x)))))
            assert abs(stored[fit.tag] - expected) < 1e-4
    # a model version of kind head, in tag_scores like any model, with calibrated yes/no labels
    head = db.current_model(cat.store, "package")
    assert head.kind == "head" and head.weights_sha256 == report.weights_sha256
    with cat.store.connection() as conn:
        labels = {(r.uri, r.tag): r.label for r in conn.execute(text("SELECT * FROM track_labels WHERE model = 'package'"))}
    right = sum(labels[(uri, pkg)] == "yes" for uri, pkg in cat.package.items())
    assert right >= 10
    assert all(labels[(uri, other)] != "yes" for uri, pkg in cat.package.items()
               for other in {"nexuiz", "wesnoth"} - {pkg})
    # retraining on the same labels is the same version: nothing new is stored
    again = train_head(cat.store, _package_labels(cat), "package")
    assert again.model_id == report.model_id
    listed = CliRunner().invoke(main, ["heads", "list", "--json", "--database-url", cat.url])
    assert listed.exit_code == 0 and {json.loads(line)["tag"] for line in listed.output.splitlines()} == {"nexuiz", "wesnoth"}


def test_a_head_with_too_few_labels_is_not_stored(real_array_catalogue: Catalogue, tmp_path: Path) -> None:
    cat = real_array_catalogue
    few = sorted(cat.package.items())[:4]
    with cat.store.connection() as conn:
        before = conn.execute(text("SELECT count(*) FROM models")).scalar_one()
    with pytest.raises(TooFewLabels, match="too few labelled tracks"):
        train_head(cat.store, LabelSet(tuple(LabelRow(u, p, True) for u, p in few), "few"), "too-few")
    csv_file = tmp_path / "few.csv"
    csv_file.write_text("uri,label\n" + "".join(f"{u},{p}\n" for u, p in few))
    result = CliRunner().invoke(main, ["heads", "train", "--labels", str(csv_file), "--name", "too-few",
                                       "--database-url", cat.url])
    assert result.exit_code == 2 and "too_few_labels" in result.output
    with cat.store.connection() as conn:
        assert conn.execute(text("SELECT count(*) FROM models")).scalar_one() == before


def test_calibrating_a_pretrained_tag_gives_yes_no_labels(catalogue: Catalogue, tmp_path: Path) -> None:
    cat = catalogue
    labels = tmp_path / "electronic.csv"
    labels.write_text("uri,label,value\n" + "".join(
        f"{uri},electronic,{int(pkg == 'nexuiz')}\n" for uri, pkg in sorted(cat.package.items())))
    result = CliRunner().invoke(main, ["calibrate", "--labels", str(labels), "--model", "musicnn-mtt", "--json",
                                       "--database-url", cat.url])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[0])
    assert row["tag"] == "electronic" and row["lower"] <= row["threshold"] <= row["upper"]
    with cat.store.connection() as conn:
        labelled = {r.uri: r.label for r in conn.execute(
            text("SELECT uri, label FROM track_labels WHERE model = 'musicnn-mtt' AND tag = 'electronic'"))}
    assert set(labelled) == set(cat.package) | {u for u in _all_uris(cat) if u not in cat.package}
    agree = sum((labelled[u] == "yes") == (p == "nexuiz") for u, p in cat.package.items() if labelled[u] != "ambiguous")
    decided = sum(labelled[u] != "ambiguous" for u in cat.package)
    assert decided >= 6 and agree / decided >= 0.8


def _all_uris(cat: Catalogue) -> list[str]:
    with cat.store.connection() as conn:
        return [r[0] for r in conn.execute(text("SELECT uri FROM tracks WHERE status = 'tagged'"))]


# --- families and plain words ------------------------------------------------------------------------
def test_vocabulary_covers_every_shipped_label_once(real_array_catalogue: Catalogue) -> None:
    rows = db.vocabulary(real_array_catalogue.store)
    assert sorted(tag for tag, _, _ in rows) == sorted(set(MTT_LABELS) | set(MSD_LABELS))
    canonical = {tag: c for tag, c, _ in rows}
    assert canonical["female"] == canonical["woman"] == canonical["female vocal"] == canonical["female vocalists"]
    assert canonical["vocal"] == canonical["vocals"] == canonical["voice"]


def test_families_view_and_queries(catalogue: Catalogue) -> None:
    cat = catalogue
    with cat.store.connection() as conn:
        rows = conn.execute(text("SELECT family, tag, score FROM track_families WHERE uri = :uri AND model = 'musicnn-mtt'"),
                            {"uri": next(iter(cat.package))}).all()
    assert {r.family for r in rows} == {"genre", "mood", "instrument", "vocals", "era/other"}
    merged = {r.tag: r.score for r in rows}
    raw = {r["tag"]: r["score"] for r in cat.store.tags_for_track(next(iter(cat.package)), "musicnn-mtt")}
    assert merged["female vocals"] == pytest.approx(max(raw[t] for t in ("female", "woman", "female vocal", "female voice")))
    by_family = CliRunner().invoke(main, ["query", "--family", "instrument", "--top", "5", "--format", "json",
                                          "--database-url", cat.url])
    assert by_family.exit_code == 0, by_family.output
    assert len(by_family.output.strip().splitlines()) == 5
    words = CliRunner().invoke(main, ["query", "--text", "calm female piano", "--model", "musicnn-mtt", "--format",
                                      "json", "--database-url", cat.url])
    assert words.exit_code == 0, words.output
    lines = [json.loads(line) for line in words.output.strip().splitlines()]
    assert lines[0]["matched"] == {"calm": ["soft"], "female": ["female vocals"], "piano": ["piano"]}
    ranked = lines[1:]
    assert ranked and [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    for r in ranked:  # the geometric mean of the three terms' scores
        assert r["score"] == pytest.approx((r["calm"] * r["female"] * r["piano"]) ** (1 / 3), rel=1e-4)


# --- pictures ----------------------------------------------------------------------------------------
def test_report_plot_draws_catalogue_figures(real_array_catalogue: Catalogue, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--plot", str(tmp_path / "figures"), "--database-url", real_array_catalogue.url])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["failures_by_kind.png", "score_histograms.png", "tag_prevalence.png", "throughput_per_run.png"]
    for name in names:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- later tag runs: heads score new tracks without being asked (runs last: it adds a track) ----------
def test_a_later_tag_run_scores_new_tracks_with_current_heads(real_array_catalogue: Catalogue) -> None:
    cat = real_array_catalogue
    if not any(h["name"] == "package" for h in db.list_heads(cat.store)):
        train_head(cat.store, _package_labels(cat), "package")
    new = cat.folder / "later" / "new.flac"
    new.parent.mkdir()
    shutil.copy2(MUSICNN_CLIPS / "pub_orchestral_2.flac", new)
    report = tag(FolderStore(cat.folder), cat.store, Settings(models=("musicnn-mtt",), workers=0, batch_size=16))
    assert report.tagged == 1
    scores = {r["tag"] for r in cat.store.tags_for_track(new.as_uri(), "package")}
    assert scores == {"nexuiz", "wesnoth"}
