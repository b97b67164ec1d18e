"""``catalogue-tagger bench SOURCE``: decode ceiling, inference speed, end-to-end speed, peak memory."""

from __future__ import annotations

import click

from catalogue_tagger.cli.options import (
    database_url_option, models_option, run_options, s3_endpoint_option, settings_with,
)
from catalogue_tagger.cli.output import echo_json, user_errors
from catalogue_tagger.config import Settings


@click.command()
@click.argument("source")
@models_option
@run_options
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decode processes (default: $CATALOGUE_TAGGER_WORKERS, else cores - 1).")
@database_url_option
@s3_endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (for scripts).")
@click.pass_obj
def bench(settings: Settings, /, source: str, as_json: bool, **overrides: object) -> None:
    """Measure decode-only, inference-only and end-to-end throughput on SOURCE."""
    from catalogue_tagger.bench import run_bench
    from catalogue_tagger.store.engine import resolve_database_url

    settings = settings_with(settings, **overrides)
    with user_errors():
        result = run_bench(source, resolve_database_url(settings.database_url, settings.home), settings)
    if as_json:
        echo_json(result)
        return
    d = result["decode_only"]
    click.echo(f"{result['files']} files, {d['audio_s'] / 60:.1f} min of audio; backend {result['backend']} on "
               f"{settings.device}, {settings.precision}, batch {settings.batch_size}, {result['workers']} decode workers")
    for name, b in result["backends"].items():
        click.echo(f"backend       {b['backend']:8} {name}: {b['reason']}")
    click.echo(f"decode only   {d['xrealtime']:8.1f}x realtime")
    for name, r in result["inference_only"].items():
        click.echo(f"inference     {r['xrealtime']:8.1f}x realtime  {r['segments_per_s']:.1f} segments/s  ({name})")
    e = result["end_to_end"]
    click.echo(f"end to end    {e['xrealtime']:8.1f}x realtime  = {result['end_to_end_vs_decode_ceiling']:.2f} of the decode ceiling")
    click.echo(f"peak RSS      {result['peak_rss_mb']:.0f} MB (inference process)")
