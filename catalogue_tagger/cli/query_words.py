"""``query --family F`` and ``query --text WORDS``: tags by family, and plain words mapped onto the vocabulary."""

from __future__ import annotations

import json
from typing import Any

import click

from catalogue_tagger.cli.failures import exit_2_on_tagger_error


def query_words(family: str | None, text: str | None, model: str | None, top: int, fmt: str,
                database_url: str | None) -> None:
    from catalogue_tagger.families import rank_by_text, top_by_family
    from catalogue_tagger.store.store import Store

    with exit_2_on_tagger_error(), Store.connect(database_url) as store:
        if family is not None:
            rows: list[dict[str, Any]] = [dict(r) for r in top_by_family(store, family, model, top)]
            columns, title = ["uri", "model", "tag", "score"], f"top {top} tracks by {family} tag"
            matched = None
        else:
            assert text is not None
            match = rank_by_text(store, text, model, top)
            names = [t.text for t in match.terms]
            rows = [{"uri": u, "score": s, **dict(zip(names, ts))} for u, s, ts in match.tracks]
            columns = ["uri", "score", *names]
            matched = {t.text: list(t.tags) for t in match.terms}
            title = f"top {top} tracks for {text!r}"
    if fmt == "json":
        if matched is not None:
            click.echo(json.dumps({"matched": matched, "unmatched": list(match.unmatched)}, ensure_ascii=False))
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    if matched is not None:
        click.echo("matched: " + "; ".join(f"{word} → {', '.join(tags)}" for word, tags in matched.items()))
        if match.unmatched:
            click.echo("not matched: " + ", ".join(match.unmatched))
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("uri", "model", "tag") else "right")
    for row in rows:
        table.add_row(*(Text(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])) for c in columns))
    Console().print(table)
