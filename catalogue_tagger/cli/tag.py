"""``catalogue-tagger tag SOURCE``: the catalogue job."""

from __future__ import annotations

import click

from catalogue_tagger.cli.options import (
    database_url_option, models_option, run_options, s3_endpoint_option, settings_with,
)
from catalogue_tagger.cli.output import echo_json, user_errors
from catalogue_tagger.config import Settings


@click.command()
@click.argument("source", required=False)
@models_option
@database_url_option
@click.option("--partition", "partition_key", default=None, help="Only objects uploaded that UTC day (YYYY-MM-DD).")
@run_options
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decode processes (0: decode inline). Default: $CATALOGUE_TAGGER_WORKERS, else cores - 1.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=None,
              help="Objects larger than this fail as too_large (default: $CATALOGUE_TAGGER_MAX_BYTES).")
@click.option("--force", is_flag=True, help="Re-tag the selection (of this source) even where already tagged.")
@click.option("--segments", "keep_segments", is_flag=True, default=None,
              help="Also store per-segment scores (segment_scores).")
@s3_endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def tag(settings: Settings, /, source: str | None, partition_key: str | None, force: bool, as_json: bool,
        **overrides: object) -> None:
    """Tag every new or changed track of SOURCE (a folder, file://… or s3://bucket/prefix) into Postgres.

    SOURCE defaults to $CATALOGUE_TAGGER_SOURCE. Exit 0 when the run completed (some tracks may have
    failed: the counts are printed and stored), 2 when it could not run.
    """
    from catalogue_tagger.decode_pool import start_decoders
    from catalogue_tagger.models.specs import get_spec
    from catalogue_tagger.sources import open_source

    settings = settings_with(settings, source=source, **overrides)
    if settings.source is None:
        raise click.UsageError("give SOURCE or set CATALOGUE_TAGGER_SOURCE")
    with user_errors():
        for name in settings.models:  # an unknown model is the user's to fix before anything is touched
            get_spec(name)
        with open_source(settings.source, s3_endpoint_url=settings.s3_endpoint_url) as objects, start_decoders(
            objects.uri, settings
        ) as decoders:
            # The decode workers are starting (a process and its imports each): the store's and the pipeline's
            # imports, the database's start or connection and its migration check overlap them.
            from catalogue_tagger.pipeline import tag as run_tag
            from catalogue_tagger.progress import RunProgress
            from catalogue_tagger.store.engine import resolve_database_url
            from catalogue_tagger.store.store import Store

            url = resolve_database_url(settings.database_url, settings.home)
            with Store.connect(url, retry_s=settings.database_retry_s) as store, RunProgress() as progress:
                store.migrate()
                report = run_tag(objects, store, settings, partition_key=partition_key, force=force,
                                 progress=progress, decoders=decoders)
    if as_json:
        echo_json(report.as_dict())
        return
    failed = ", ".join(f"{kind} {n}" for kind, n in sorted(report.failed.items())) or "none"
    click.echo(
        f"run {report.run_id}: tagged {report.tagged}, failed {report.n_failed} ({failed}), skipped {report.skipped}; "
        f"{report.audio_s / 3600:.2f} h of audio in {report.wall_s:.1f} s = {report.xrealtime:.1f}x realtime"
    )
