"""``catalogue-tagger heads``: train your own tags on stored embeddings, list them."""

from __future__ import annotations

from typing import Any

import click

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import echo_json, print_table, user_errors
from catalogue_tagger.config import Settings


@click.group()
def heads() -> None:
    """Your own tags, learnt from your labels on the embeddings already stored (no decoding)."""


@heads.command()
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV of uri,label[,value] (value 1/0, default 1).")
@click.option("--name", required=True, help="Name of the head (a model name; retraining makes a new version).")
@click.option("--from-model", default="musicnn-mtt", show_default=True, help="Whose stored embeddings to learn from.")
@click.option("--min-per-class", type=click.IntRange(min=2), default=5, show_default=True,
              help="Positives and negatives a label needs; fewer and the label is refused.")
@click.option("--objective", default="f1", show_default=True, help="Threshold choice: f1 or precision>=P.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@database_url_option
@click.pass_obj
def train(settings: Settings, labels_path: str, name: str, from_model: str, min_per_class: int, objective: str, as_json: bool,
          database_url: str | None) -> None:
    """Train one logistic regression per label, report cross-validated AUCs, store it, score every track.

    Example: catalogue-tagger heads train --labels moods.csv --name label-moods
    """
    from catalogue_tagger.calibrate import parse_objective
    from catalogue_tagger.heads import train_head
    from catalogue_tagger.labelsets import read_labels
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.store import Store

    with user_errors():
        parse_objective(objective)
        labels = read_labels(labels_path)
        with Store.connect(resolve_database_url(database_url or settings.database_url, settings.home)) as store:
            store.migrate()
            report = train_head(store, labels, name, from_model, min_per_class=min_per_class, objective=objective)
    rows: list[dict[str, Any]] = [
        {
            "label": f.tag, "positive": f.n_positive, "negative": f.n_negative,
            "cv_roc_auc": round(f.cv_roc_auc, 4), "cv_pr_auc": round(f.cv_pr_auc, 4), "C": f.c,
            "threshold": round(f.threshold.threshold, 4), "ambiguous": [round(f.threshold.lower, 4), round(f.threshold.upper, 4)],
            "precision": round(f.threshold.precision, 4), "recall": round(f.threshold.recall, 4),
        }
        for f in report.fit.fits
    ]
    summary = {
        "name": report.name, "model_id": report.model_id, "weights_sha256": report.weights_sha256,
        "from_model": report.source_model, "labelled_tracks": report.n_tracks, "missing_tracks": len(report.missing),
        "labels": rows, "refused": report.fit.skipped,
        "scored_tracks": report.scored_tracks, "score_s": round(report.score_s, 3),
    }
    if as_json:
        echo_json(summary)
        return
    print_table(
        ["label", "pos", "neg", "CV ROC-AUC", "CV PR-AUC", "threshold", "ambiguous band", "P / R"],
        [[r["label"], r["positive"], r["negative"], f"{r['cv_roc_auc']:.3f}", f"{r['cv_pr_auc']:.3f}",
          f"{r['threshold']:.3f}", f"[{r['ambiguous'][0]:.3f}, {r['ambiguous'][1]:.3f})",
          f"{r['precision']:.2f} / {r['recall']:.2f}"] for r in rows],
        title=f"head {name} ({report.weights_sha256[:12]}) on {from_model} embeddings, {report.n_tracks} labelled tracks",
    )
    for label, why in report.fit.skipped.items():
        click.echo(f"refused {label}: {why}")
    if report.missing:
        click.echo(f"{len(report.missing)} labelled track(s) have no stored {from_model} embedding (ignored)")
    click.echo(f"scored {report.scored_tracks} track(s) from stored embeddings in {report.score_s:.2f} s")


@heads.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per (head version, label).")
@database_url_option
@click.pass_obj
def list_command(settings: Settings, as_json: bool, database_url: str | None) -> None:
    """Every head version with its labels and cross-validated AUCs."""
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.intelligence import list_heads
    from catalogue_tagger.store.store import Store

    with user_errors():
        with Store.connect(resolve_database_url(database_url or settings.database_url, settings.home)) as store:
            rows = list_heads(store)
    if as_json:
        for row in rows:
            echo_json(row)
        return
    print_table(
        ["head", "version", "current", "from", "label", "pos", "neg", "CV ROC-AUC", "CV PR-AUC"],
        [[r["name"], r["weights_sha256"][:12], "yes" if r["current"] else "", r["source_model"], r["tag"],
          r["n_positive"], r["n_negative"], r["cv_roc_auc"], r["cv_pr_auc"]] for r in rows],
    )
