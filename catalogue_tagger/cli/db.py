"""``catalogue-tagger db``: build and inspect the schema; start and stop the embedded server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

import click
from sqlalchemy.engine import make_url

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import echo_json, user_errors
from catalogue_tagger.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from catalogue_tagger.store.queries import Migration

def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """Create, migrate and inspect the database; start/stop the embedded Postgres."""


def _apply(
    settings: Settings, database_url: str | None, step: Callable[[Engine], list[Migration]]
) -> tuple[str, list[Migration]]:
    """Run ``step`` (``migrate.init`` or ``migrate.migrate``) on the resolved database; its URL and what it applied."""
    from catalogue_tagger.store.engine import make_engine, resolve_database_url

    with user_errors():
        url = resolve_database_url(database_url or settings.database_url, settings.home)
        engine = make_engine(url)
        try:
            return url, step(engine)
        finally:
            engine.dispose()


@db.command()
@database_url_option
@click.pass_obj
def init(settings: Settings, database_url: str | None) -> None:
    """Build the schema (an empty database gets schema.sql in one go; else pending migrations)."""
    from catalogue_tagger.store import migrate

    url, applied = _apply(settings, database_url, migrate.init)
    click.echo(f"{_safe(url)}: {len(applied)} migration(s) applied" if applied else f"{_safe(url)}: up to date")


@db.command(name="migrate")
@database_url_option
@click.pass_obj
def migrate_command(settings: Settings, database_url: str | None) -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    from catalogue_tagger.store import migrate

    url, applied = _apply(settings, database_url, migrate.migrate)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo(f"{_safe(url)}: up to date")


@db.command()
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(settings: Settings, database_url: str | None, as_json: bool) -> None:
    """The embedded server's state and the schema's migrations (does not start anything)."""
    from catalogue_tagger.store import migrate
    from catalogue_tagger.store.embedded import EmbeddedPostgres
    from catalogue_tagger.store.engine import make_engine, normalize_url

    report: dict[str, object] = {}
    url = database_url or settings.database_url
    if url is None:
        server = EmbeddedPostgres(settings.home).status()
        report["embedded"] = asdict(server)
        url = server.url
    if url is not None:
        report["database"] = _safe(normalize_url(url))
        engine = make_engine(url)
        try:
            with user_errors():
                report["migrations"] = [
                    {"version": s.version, "name": s.name, "applied_at": s.applied_at.isoformat() if s.applied_at else None}
                    for s in migrate.status(engine)
                ]
                report["schema_info"] = migrate.schema_info(engine) if any(
                    m["applied_at"] for m in report["migrations"]  # type: ignore[attr-defined]
                ) else {}
        finally:
            engine.dispose()
    if as_json:
        echo_json(report)
        return
    if "embedded" in report:
        server_state = report["embedded"]
        assert isinstance(server_state, dict)
        state = f"running, pid {server_state['pid']}, port {server_state['port']}" if server_state["running"] else "stopped"
        click.echo(f"embedded server: {state} ({server_state['pgdata']})")
    if "database" in report:
        click.echo(f"database: {report['database']}")
        for m in report["migrations"]:  # type: ignore[attr-defined]
            click.echo(f"  {m['version']:04d}_{m['name']}: {m['applied_at'] or 'pending'}")
        for key, value in report["schema_info"].items():  # type: ignore[attr-defined]
            click.echo(f"  {key}: {value}")


@db.command()
@click.pass_obj
def start(settings: Settings) -> None:
    """Start the embedded server (no-op if it runs) and print its URL."""
    from catalogue_tagger.store.embedded import EmbeddedPostgres

    with user_errors():
        click.echo(EmbeddedPostgres(settings.home).ensure_running())


@db.command()
@click.pass_obj
def stop(settings: Settings) -> None:
    """Stop the embedded server."""
    from catalogue_tagger.store.embedded import EmbeddedPostgres

    with user_errors():
        stopped = EmbeddedPostgres(settings.home).stop()
    click.echo("embedded server stopped" if stopped else "embedded server was not running")
