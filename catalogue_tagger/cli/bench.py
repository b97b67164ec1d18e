"""``catalogue-tagger bench SOURCE``: decode ceiling, inference speed, end-to-end speed, peak memory."""

from __future__ import annotations

import json

import click

from catalogue_tagger.cli.options import database_url_option, split_models
from catalogue_tagger.cli.tag import default_workers


@click.command()
@click.argument("source")
@click.option("--models", default="musicnn-mtt", show_default=True, help="Comma-separated model names.")
@click.option("--backend", type=click.Choice(["torch", "onnx", "tensorrt"]), default="torch", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=None, type=int, help="Decode processes (default: cores - 1).")
@database_url_option
@click.option("--s3-endpoint-url", envvar="AWS_ENDPOINT_URL", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (for scripts).")
def bench(source: str, models: str, backend: str, device: str, batch_size: int, workers: int | None, database_url: str | None, s3_endpoint_url: str | None, as_json: bool) -> None:
    """Measure decode-only, inference-only and end-to-end throughput on SOURCE."""
    from catalogue_tagger.bench import run_bench
    from catalogue_tagger.store.engine import resolve_database_url

    names = split_models(models) or ("musicnn-mtt",)
    result = run_bench(
        source, resolve_database_url(database_url), names, backend=backend, device=device,
        batch_size=batch_size, workers=default_workers() if workers is None else workers,
        s3_endpoint_url=s3_endpoint_url,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    d = result["decode_only"]
    click.echo(f"{result['files']} files, {d['audio_s'] / 60:.1f} min of audio; {backend} on {device}, batch {batch_size}, {result['workers']} decode workers")
    click.echo(f"decode only   {d['xrealtime']:8.1f}x realtime")
    for name, r in result["inference_only"].items():
        click.echo(f"inference     {r['xrealtime']:8.1f}x realtime  {r['segments_per_s']:.1f} segments/s  ({name})")
    e = result["end_to_end"]
    click.echo(f"end to end    {e['xrealtime']:8.1f}x realtime  = {result['end_to_end_vs_decode_ceiling']:.2f} of the decode ceiling")
    click.echo(f"peak RSS      {result['peak_rss_mb']:.0f} MB (inference process)")
