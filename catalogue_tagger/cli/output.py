"""Everything the CLI prints: JSON lines, tables, and one-line errors with their exit codes.

Exit codes: 0 success; 1 the command ran but some inputs failed (``predict``); 2 a usage error or the command
could not run (database unreachable, unknown model, bad setting). A user's mistake never shows a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from catalogue_tagger.errors import TaggerError

EXIT_SOME_FAILED = 1
EXIT_CANNOT_RUN = 2


class CannotRun(click.ClickException):
    """The command could not do its work: one line on stderr, exit code 2."""

    exit_code = EXIT_CANNOT_RUN


@contextmanager
def user_errors() -> Iterator[None]:
    """A named error of the library ends the command with one line naming its kind, and exit code 2."""
    try:
        yield
    except TaggerError as exc:
        raise CannotRun(f"{exc.kind}: {exc}") from exc


def echo_json(record: Any) -> None:
    """One JSON object on one line (non-ASCII kept as is)."""
    click.echo(json.dumps(record, ensure_ascii=False))


def cell(value: Any) -> str:
    """How a value shows in a table: floats to 4 decimals, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """A table on stdout; values are data, never markup. Columns named ``score…`` align right."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column.startswith("score") else "left")
    for row in rows:
        table.add_row(*(Text(cell(value)) for value in row))
    Console().print(table)
