"""How the catalogue-intelligence commands end on a user's mistake: one line, exit 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from catalogue_tagger.errors import TaggerError


@contextmanager
def exit_2_on_tagger_error() -> Iterator[None]:
    """A named error (unknown model or track, bad labels file, unreachable database) → ``error (kind): …``, exit 2."""
    try:
        yield
    except TaggerError as exc:
        click.echo(f"error ({exc.kind}): {exc}", err=True)
        sys.exit(2)
