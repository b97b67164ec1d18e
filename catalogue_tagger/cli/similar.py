"""``catalogue-tagger similar URI``: the tracks nearest to one track by stored embedding."""

from __future__ import annotations

import click

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import echo_json, print_table, user_errors
from catalogue_tagger.config import Settings


@click.command()
@click.argument("uri")
@click.option("--model", default="musicnn-mtt", show_default=True, help="Whose embeddings (its current version).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="How many neighbours.")
@click.option("--where", "filters", multiple=True, metavar="FILTER",
              help="Keep tracks whose tag score passes, e.g. 'piano>=0.3', 'vocals<0.2', '0.2<=slow<=0.6' (repeatable).")
@click.option("--tags-model", default=None, metavar="NAME", help="Model whose tags --where reads (default: --model).")
@click.option("--exact", is_flag=True, help="Exact scan even where an index exists (for checking recall).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one {uri, model, distance} per line.")
@database_url_option
@click.pass_obj
def similar(settings: Settings, uri: str, model: str, top: int, filters: tuple[str, ...], tags_model: str | None, exact: bool, fmt: str,
            database_url: str | None) -> None:
    """Tracks that sound like the one at URI: nearest stored embeddings (cosine), the track itself excluded.

    Example: catalogue-tagger similar s3://label/masters/0001.flac --top 20 --where 'vocals<0.3'
    """
    from catalogue_tagger.similar import parse_filter, similar as find_similar
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.store import Store

    with user_errors():
        parsed = [parse_filter(f) for f in filters]
        with Store.connect(resolve_database_url(database_url or settings.database_url, settings.home)) as store:
            neighbours = find_similar(store, uri, model, top, parsed, tags_model=tags_model, exact=exact)
    if fmt == "json":
        for n in neighbours:
            echo_json({"uri": n.uri, "model": n.model, "distance": round(n.distance, 6)})
        return
    print_table(["#", "uri", "distance"], [[i, n.uri, n.distance] for i, n in enumerate(neighbours, start=1)],
                title=f"tracks like {uri} ({model})")
