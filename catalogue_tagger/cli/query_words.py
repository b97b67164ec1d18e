"""``query --family F`` and ``query --text WORDS``: tags by family, and plain words mapped onto the vocabulary."""

from __future__ import annotations

from typing import Any

import click

from catalogue_tagger.cli.output import echo_json, print_table, user_errors


def query_words(family: str | None, text: str | None, model: str | None, top: int, fmt: str,
                database_url: str) -> None:
    """Print tracks by family, or by plain words (with what the words matched); ``database_url`` resolved."""
    from catalogue_tagger.families import rank_by_text, top_by_family
    from catalogue_tagger.store.store import Store

    with user_errors(), Store.connect(database_url) as store:
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
            echo_json({"matched": matched, "unmatched": list(match.unmatched)})
        for row in rows:
            echo_json(row)
        return
    if matched is not None:
        click.echo("matched: " + "; ".join(f"{word} → {', '.join(tags)}" for word, tags in matched.items()))
        if match.unmatched:
            click.echo("not matched: " + ", ".join(match.unmatched))
    print_table(columns, [[row[c] for c in columns] for row in rows], title=title)
