"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from catalogue_tagger.config import ENV_DATABASE_URL

F = TypeVar("F", bound=Callable[..., Any])


def database_url_option(func: F) -> F:
    return click.option(
        "--database-url",
        envvar=ENV_DATABASE_URL,
        default=None,
        metavar="URL",
        help=f"Postgres URL (env {ENV_DATABASE_URL}); unset: the embedded server, started on demand.",
    )(func)


def split_models(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())
