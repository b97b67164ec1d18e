"""Options shared by several commands. Each one overrides a field of the :class:`Settings` the root command
read from the environment; an option not given leaves the setting (variable or default) as it is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click

from catalogue_tagger.config import BACKENDS, PRECISIONS, Settings, split_names
from catalogue_tagger.cli.output import user_errors

F = TypeVar("F", bound=Callable[..., Any])


def settings_with(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with every override that was given (not None); a bad value is a one-line error, exit 2."""
    given = {name: value for name, value in overrides.items() if value is not None}
    if isinstance(given.get("models"), str):
        given["models"] = split_names(given["models"])
    with user_errors():
        return replace(settings, **given)


def _option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.option(*decls, **attrs)(func)

    return decorate


database_url_option = _option(
    "--database-url", default=None, metavar="URL",
    help="Postgres URL (default: $CATALOGUE_TAGGER_DATABASE_URL; unset: the embedded server, started on demand).",
)
models_option = _option(
    "--models", "--model", "models", default=None, metavar="NAMES",
    help="Comma-separated model names (default: $CATALOGUE_TAGGER_MODELS, else the default taggers).",
)
s3_endpoint_option = _option(
    "--s3-endpoint-url", default=None, metavar="URL", help="S3 endpoint (default: $AWS_ENDPOINT_URL)."
)


def run_options(func: F) -> F:
    """Where and how models run: backend, device, precision, batch size, max duration."""
    for option in reversed((
        click.option("--backend", type=click.Choice(BACKENDS), default=None,
                     help="Inference backend (default: $CATALOGUE_TAGGER_BACKEND, else auto: per model the fastest "
                     "present for the device and precision)."),
        click.option("--device", default=None, help="cpu or cuda[:N] (default: $CATALOGUE_TAGGER_DEVICE, else cpu)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="Numeric precision, recorded with the scores (default: $CATALOGUE_TAGGER_PRECISION, else "
                     "fp32)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Segments per inference batch, across tracks (default: $CATALOGUE_TAGGER_BATCH_SIZE, "
                     "else 64)."),
        click.option("--max-duration", "max_duration_s", type=float, default=None,
                     help="Decode at most this many seconds per track; a longer track is tagged from its start "
                     "and flagged capped (default: $CATALOGUE_TAGGER_MAX_DURATION)."),
    )):
        func = option(func)
    return func
