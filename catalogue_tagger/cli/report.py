"""``catalogue-tagger report``: the state of the catalogue, and catalogue-level figures."""

from __future__ import annotations

import click

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import CannotRun, echo_json, user_errors
from catalogue_tagger.config import Settings


@click.command()
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write figures into this folder: tag prevalence, score histograms, failures by kind, throughput per run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@database_url_option
@click.pass_obj
def report(settings: Settings, plot_dir: str | None, as_json: bool, database_url: str | None) -> None:
    """Counts of tracks by status, failures by kind, runs, the most prevalent tags; --plot draws them."""
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.intelligence import catalogue_report
    from catalogue_tagger.store.store import Store

    with user_errors():
        url = resolve_database_url(database_url or settings.database_url, settings.home)
        with Store.connect(url) as store:
            data = catalogue_report(store)
    paths = []
    if plot_dir is not None:
        try:
            from catalogue_tagger.plots import catalogue_figures
        except ImportError as exc:
            raise CannotRun(f"figures need matplotlib: pip install 'catalogue-tagger[plots]' ({exc})") from exc

        paths = [str(p) for p in catalogue_figures(data, plot_dir)]
    if as_json:
        echo_json({"counts": data.counts, "failures": data.failures, "runs": data.runs,
                               "prevalence": [{"model": m, "tag": t, "mean_score": s, "share_above": a}
                                              for m, t, s, a in data.prevalence], "figures": paths})
        return
    c = data.counts
    click.echo(f"tracks {int(c['total'])}: tagged {int(c['tagged'])} ({c['tagged_hours']:.2f} h), "
               f"failed {int(c['failed'])}, pending {int(c['pending'])}")
    if data.failures:
        click.echo("failures: " + ", ".join(f"{k} {n}" for k, n in data.failures.items()))
    for r in data.runs[-5:]:
        click.echo(f"run {r['run_id']} {r['started_at'][:19]} {r['status']}: tagged {r['tagged']}, {r['xrealtime']}x realtime")
    for model in sorted({m for m, *_ in data.prevalence}):
        top = [f"{t} {s:.2f}" for m, t, s, _ in data.prevalence if m == model][:5]
        click.echo(f"{model}: most prevalent {', '.join(top)}")
    for p in paths:
        click.echo(f"wrote {p}")
