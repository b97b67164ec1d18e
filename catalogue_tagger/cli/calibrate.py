"""``catalogue-tagger calibrate``: yes/no thresholds of a model's tags from a labelled sample."""

from __future__ import annotations

import click

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import EXIT_CANNOT_RUN, echo_json, user_errors
from catalogue_tagger.config import Settings


@click.command()
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV of uri,label[,value]: labels are tags of --model.")
@click.option("--model", required=True, help="Model whose stored scores are calibrated (its current version).")
@click.option("--objective", default="f1", show_default=True, help="f1 (best F1) or precision>=P (most recall at P).")
@click.option("--min-per-class", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per calibrated tag.")
@database_url_option
@click.pass_obj
def calibrate(settings: Settings, labels_path: str, model: str, objective: str, min_per_class: int, as_json: bool,
              database_url: str | None) -> None:
    """Choose a threshold and an ambiguous band per tag from labelled tracks; the view track_labels uses them.

    Example: catalogue-tagger calibrate --labels acoustic.csv --model musicnn-msd --objective 'precision>=0.9'
    """
    from catalogue_tagger.calibrate import calibrate_scores, parse_objective
    from catalogue_tagger.labelsets import read_labels
    from catalogue_tagger.store import intelligence as db
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.store import Store

    with user_errors():
        parse_objective(objective)
        labels = read_labels(labels_path)
        with Store.connect(resolve_database_url(database_url or settings.database_url, settings.home)) as store:
            store.migrate()
            stored = db.current_model(store, model)
            scores = db.scores_for_uris(store, stored.model_id, labels.uris, labels.labels)
            result = calibrate_scores(labels, scores, stored.labels, objective, min_per_class)
            db.save_thresholds(store, stored.model_id, [t.as_row() for t in result.thresholds], source=labels.source)
    if as_json:
        for t in result.thresholds:
            echo_json({"model": model, **t.as_row()})
    else:
        for t in result.thresholds:
            click.echo(f"{model} {t.tag}: threshold {t.threshold:.4f} (precision {t.precision:.2f}, recall {t.recall:.2f}, "
                       f"{t.n_positive}+/{t.n_negative}-), ambiguous in [{t.lower:.4f}, {t.upper:.4f})")
    for tag, why in result.skipped.items():
        click.echo(f"skipped {tag}: {why}", err=True)
    if not result.thresholds:
        click.echo("error (too_few_labels): no tag could be calibrated", err=True)
        raise SystemExit(EXIT_CANNOT_RUN)
