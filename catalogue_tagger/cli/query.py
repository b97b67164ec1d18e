"""``catalogue-tagger query``: the best tracks for a tag, or the tags of a track."""

from __future__ import annotations

import json
from typing import Any

import click

from catalogue_tagger.cli.db import store_errors_as_click
from catalogue_tagger.cli.options import database_url_option


@click.command()
@click.option("--tag", metavar="TAG", help="List the tracks scoring highest for TAG.")
@click.option("--track", metavar="URI", help="List the current tags of the track at URI.")
@click.option("--family", metavar="F", help="Tracks by their strongest tag of family F (genre, mood, instrument, vocals, era/other).")
@click.option("--text", metavar="WORDS", help="Tracks ranked by the tags plain words match, e.g. \"calm female piano\".")
@click.option("--model", metavar="NAME", default=None, help="Only this model (its latest version).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="How many tracks (--tag).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one object per line.")
@database_url_option
def query(tag: str | None, track: str | None, family: str | None, text: str | None, model: str | None, top: int, fmt: str, database_url: str | None) -> None:
    """Query stored tags: the best tracks for --tag TAG, the tags of --track URI, --family F or --text WORDS."""
    if sum(option is not None for option in (tag, track, family, text)) != 1:
        raise click.UsageError("give exactly one of --tag, --track, --family or --text")
    if family is not None or text is not None:
        from catalogue_tagger.cli.query_words import query_words

        query_words(family, text, model, top, fmt, database_url)
        return
    from catalogue_tagger.store.store import Store

    with store_errors_as_click(), Store.connect(database_url) as store:
        if tag is not None:
            rows = store.top_tracks(tag, model=model, top=top)
            columns = ["uri", "model", "score"]
            title = f"top {top} tracks for {tag!r}"
        else:
            assert track is not None
            rows = store.tags_for_track(track, model=model)
            columns = ["model", "tag", "score", "score_max"]
            title = f"tags of {track}"
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    _print_table(title, columns, rows)


def _print_table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column.startswith("score") else "left")
    for row in rows:
        # Text(): stored strings are data, never rich markup.
        table.add_row(*(Text(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])) for c in columns))
    Console().print(table)
