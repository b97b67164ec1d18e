"""``catalogue-tagger query``: the best tracks for a tag, or the tags of a track."""

from __future__ import annotations

import json
from typing import Any

import click

from catalogue_tagger.cli.db import store_errors_as_click
from catalogue_tagger.cli.options import database_url_option


@click.command()
@click.option("--tag", metavar="TAG", help="List the tracks scoring highest for TAG.")
@click.option("--track", metavar="URI", help="List the current tags (and descriptors) of the track at URI.")
@click.option("--model", metavar="NAME", default=None, help="Only this model (its latest version).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="How many tracks (--tag).")
@click.option("--bpm", metavar="MIN-MAX", default=None, help="Only tracks with a tempo in this range, e.g. 120-128 (one tempo: ±4 %).")
@click.option("--key", "key_name", metavar="KEY", default=None, help="Only tracks in this key, e.g. 'A minor', Am, 8A.")
@click.option("--compatible-with", metavar="KEY", default=None,
              help="Only tracks in keys that mix with KEY: itself, its Camelot neighbours and its relative key.")
@click.option("--louder-than", "min_lufs", type=float, default=None, metavar="LUFS", help="Integrated loudness above LUFS.")
@click.option("--quieter-than", "max_lufs", type=float, default=None, metavar="LUFS", help="Integrated loudness below LUFS.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="With descriptor filters and --tag: the least score that counts as tagged.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one object per line.")
@database_url_option
def query(tag: str | None, track: str | None, model: str | None, top: int, bpm: str | None, key_name: str | None,
          compatible_with: str | None, min_lufs: float | None, max_lufs: float | None, min_score: float, fmt: str,
          database_url: str | None) -> None:
    """Query stored tags and descriptors: the best tracks for --tag TAG, the tags of --track URI, or tracks by
    tempo, key and loudness (optionally also tagged TAG):

        catalogue-tagger query --tag electronic --bpm 120-128 --key "A minor" --louder-than -10
        catalogue-tagger query --compatible-with 8A --bpm 118-130
    """
    from catalogue_tagger.descriptors.keys import Key, UnknownKey

    by_descriptors = any(v is not None for v in (bpm, key_name, compatible_with, min_lufs, max_lufs))
    if track is not None and (tag is not None or by_descriptors):
        raise click.UsageError("--track cannot be combined with --tag or descriptor filters")
    if track is None and tag is None and not by_descriptors:
        raise click.UsageError("give --tag, --track, or a descriptor filter (--bpm, --key, --compatible-with, --louder-than, --quieter-than)")
    try:
        min_bpm, max_bpm = _bpm_range(bpm) if bpm is not None else (None, None)
        keys: list[str] | None = None
        if key_name is not None:
            keys = [Key.parse(key_name).name]
        if compatible_with is not None:
            compatible = [k.name for k in Key.parse(compatible_with).compatible()]
            keys = compatible if keys is None else [k for k in keys if k in compatible]
    except UnknownKey as exc:
        raise click.BadParameter(str(exc)) from exc
    from catalogue_tagger.store.store import Store

    descriptors: dict[str, Any] | None = None
    with store_errors_as_click(), Store.connect(database_url) as store:
        if by_descriptors:
            rows = store.tracks_by_descriptors(
                min_bpm=min_bpm, max_bpm=max_bpm, keys=keys, min_lufs=min_lufs, max_lufs=max_lufs,
                tag=tag, min_score=min_score, model=model, top=top,
            )
            columns = ["uri", "tempo_bpm", "key", "camelot", "loudness_lufs"] + (["model", "score"] if tag else [])
            title = "tracks matching " + ", ".join(
                part for part in (
                    f"tag {tag!r} ≥ {min_score}" if tag else "", f"{bpm} BPM" if bpm else "",
                    f"keys {', '.join(keys)}" if keys is not None else "",
                    f"louder than {min_lufs} LUFS" if min_lufs is not None else "",
                    f"quieter than {max_lufs} LUFS" if max_lufs is not None else "",
                ) if part
            )
        elif tag is not None:
            rows = store.top_tracks(tag, model=model, top=top)
            columns = ["uri", "model", "score"]
            title = f"top {top} tracks for {tag!r}"
        else:
            assert track is not None
            rows = store.tags_for_track(track, model=model)
            descriptors = store.descriptors_for_track(track)
            columns = ["model", "tag", "score", "score_max"]
            title = f"tags of {track}"
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        if descriptors is not None:
            click.echo(json.dumps({"descriptors": descriptors}, ensure_ascii=False, default=str))
        return
    _print_table(title, columns, rows)
    if descriptors is not None:
        pairs = [{"descriptor": k, "value": v} for k, v in descriptors.items() if k not in ("uri", "track_id")]
        _print_table(f"descriptors of {track}", ["descriptor", "value"], pairs)


def _bpm_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high)) if sep else (float(low) / 1.04, float(low) * 1.04)  # one tempo: ±4 %
    except ValueError:
        raise click.BadParameter(f"--bpm takes MIN-MAX (e.g. 120-128) or one tempo, not {text!r}") from None
    if bounds[0] > bounds[1]:
        raise click.BadParameter(f"--bpm {text}: the minimum is above the maximum")
    return bounds


def _print_table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column.startswith("score") else "left")
    for row in rows:
        # Text(): stored strings are data, never rich markup.
        table.add_row(*(Text(_cell(row[c])) for c in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)
