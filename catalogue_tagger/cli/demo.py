"""``catalogue-tagger demo``: tag the bundled demo catalogue into Postgres and show how to query it."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import click

from catalogue_tagger.cli.options import database_url_option, settings_with
from catalogue_tagger.cli.output import user_errors
from catalogue_tagger.config import Settings

SHOWN_EXAMPLES = ("tags_of_every_track", "top_tracks_for_a_tag")


def demo_catalogue(home: Path) -> Path:
    """Copy the bundled excerpts to a stable folder (their URIs identify the tracks)."""
    folder = home / "demo-catalogue"
    folder.mkdir(parents=True, exist_ok=True)
    for item in resources.files("catalogue_tagger.demo").iterdir():
        if item.name.endswith(".mp3") and not (folder / item.name).exists():
            with resources.as_file(item) as path:
                shutil.copy2(path, folder / item.name)
    return folder


@click.command()
@database_url_option
@click.option("--top", default=5, show_default=True, help="Tags shown per track.")
@click.pass_obj
def demo(settings: Settings, database_url: str | None, top: int) -> None:
    """Tag a small catalogue of real music into Postgres (embedded by default), then query it."""
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy.engine import make_url

    from catalogue_tagger.pipeline import tag
    from catalogue_tagger.progress import RunProgress
    from catalogue_tagger.sources import FolderStore
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.queries import example_queries
    from catalogue_tagger.store.store import Store

    settings = settings_with(settings, database_url=database_url)
    folder = demo_catalogue(settings.home)
    console = Console()
    with user_errors():
        url = resolve_database_url(settings.database_url, settings.home)
    console.print(f"Tagging the demo catalogue in {folder} with {', '.join(settings.models)} …")
    with user_errors(), FolderStore(folder) as source, Store.connect(url, retry_s=settings.database_retry_s) as store, RunProgress() as progress:
        store.migrate()
        report = tag(source, store, settings, progress=progress)
        console.print(
            f"run {report.run_id}: tagged {report.tagged}, failed {report.n_failed}, "
            f"already tagged {report.skipped}; {report.xrealtime:.0f}x realtime"
        )
        for model in settings.models:
            table = Table("track", f"top {top} tags ({model})", title=f"tag_scores, model {model}")
            for obj in sorted(source.list(), key=lambda o: o.uri):
                tags = store.tags_for_track(obj.uri, model)[:top]
                table.add_row(Path(obj.uri).name, ", ".join(f"{t['tag']} {t['score']:.2f}" for t in tags))
            console.print(table)
    shown = make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
    console.print(f"\nQuery them with SQL (psql {shown}):\n", markup=False, highlight=False)
    examples = example_queries()
    console.print("\n\n".join(examples[name] for name in SHOWN_EXAMPLES), markup=False, highlight=False)
    console.print("\nor: catalogue-tagger query --tag techno   |   catalogue-tagger query --track URI", markup=False)
