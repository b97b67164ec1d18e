"""``catalogue-tagger tag SOURCE``: the catalogue job."""

from __future__ import annotations

import json
import os
import sys

import click

from catalogue_tagger.cli.options import database_url_option, split_models


def default_workers() -> int:
    """Leave one core to inference; at least one decode process."""
    return max(1, (os.cpu_count() or 2) - 1)


@click.command()
@click.argument("source", envvar="CATALOGUE_TAGGER_SOURCE")
@click.option("--models", default=None, help="Comma-separated model names (default: the default taggers, or $CATALOGUE_TAGGER_MODELS).")
@database_url_option
@click.option("--partition", "partition_key", default=None, help="Only objects uploaded that UTC day (YYYY-MM-DD).")
@click.option("--batch-size", default=64, show_default=True, help="Segments per inference batch, across tracks.")
@click.option("--workers", default=None, type=int, help="Decode processes (0: decode inline). Default: cores - 1.")
@click.option("--backend", type=click.Choice(["torch", "onnx", "tensorrt"]), default="torch", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--force", is_flag=True, help="Re-tag the selection even where already tagged.")
@click.option("--max-duration", "max_duration_s", type=float, default=None, help="Decode at most this many seconds per track.")
@click.option("--segments", is_flag=True, help="Also store per-segment scores (segment_scores).")
@click.option("--s3-endpoint-url", envvar="AWS_ENDPOINT_URL", default=None, help="S3 endpoint (or $AWS_ENDPOINT_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def tag(source: str, models: str | None, database_url: str | None, partition_key: str | None, batch_size: int, workers: int | None, backend: str, device: str, force: bool, max_duration_s: float | None, segments: bool, s3_endpoint_url: str | None, as_json: bool) -> None:
    """Tag every new or changed track of SOURCE (a folder, file://… or s3://bucket/prefix) into Postgres."""
    from catalogue_tagger.config import Settings
    from catalogue_tagger.errors import TaggerError
    from catalogue_tagger.pipeline import TagOptions, tag as run_tag
    from catalogue_tagger.progress import RunProgress
    from catalogue_tagger.sources import open_source
    from catalogue_tagger.store.store import Store

    settings = Settings.from_env()
    options = TagOptions(
        models=split_models(models) or settings.models,
        batch_size=batch_size,
        workers=default_workers() if workers is None else workers,
        device=device,
        backend=backend,
        force=force,
        max_duration_s=max_duration_s,
        keep_segments=segments,
        s3_endpoint_url=s3_endpoint_url,
    )
    try:
        with open_source(source, s3_endpoint_url=s3_endpoint_url) as store_src, Store.connect(database_url) as store, RunProgress() as progress:
            report = run_tag(store_src, store, options, partition_key=partition_key, progress=progress)
    except TaggerError as exc:
        click.echo(f"error ({exc.kind}): {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    failed = ", ".join(f"{kind} {n}" for kind, n in sorted(report.failed.items())) or "none"
    click.echo(
        f"run {report.run_id}: tagged {report.tagged}, failed {report.n_failed} ({failed}), skipped {report.skipped}; "
        f"{report.audio_s / 3600:.2f} h of audio in {report.wall_s:.1f} s = {report.xrealtime:.1f}x realtime"
    )
