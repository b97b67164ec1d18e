"""``catalogue-tagger query``: the best tracks for a tag, or the tags of a track."""

from __future__ import annotations

import click

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import echo_json, print_table, user_errors
from catalogue_tagger.config import Settings


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
@click.pass_obj
def query(settings: Settings, tag: str | None, track: str | None, family: str | None, text: str | None,
          model: str | None, top: int, fmt: str, database_url: str | None) -> None:
    """Query stored tags: the best tracks for --tag TAG, the tags of --track URI, the tracks by --family F, or
    by plain words --text WORDS (reads only)."""
    if sum(option is not None for option in (tag, track, family, text)) != 1:
        raise click.UsageError("give exactly one of --tag, --track, --family or --text")
    from catalogue_tagger.store.engine import resolve_database_url

    if family is not None or text is not None:
        from catalogue_tagger.cli.query_words import query_words

        with user_errors():
            url = resolve_database_url(database_url or settings.database_url, settings.home)
        query_words(family, text, model, top, fmt, url)
        return
    from catalogue_tagger.store.store import Store

    with user_errors(), Store.connect(resolve_database_url(database_url or settings.database_url, settings.home)) as store:
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
            echo_json(row)
        return
    print_table(columns, [[row[c] for c in columns] for row in rows], title=title)
