"""``catalogue-tagger db`` and ``query`` against a real database."""

from __future__ import annotations

import json

from click.testing import CliRunner
from store_factories import LABELS, result
from test_store import setup_tracks

from catalogue_tagger.cli import main
from catalogue_tagger.store.store import Store


def test_db_commands_and_query(store: Store, database_url: str) -> None:
    runner = CliRunner()
    env = {"CATALOGUE_TAGGER_DATABASE_URL": database_url}
    assert runner.invoke(main, ["db", "migrate"], env=env).exit_code == 0
    status = runner.invoke(main, ["db", "status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    assert all(m["applied_at"] for m in json.loads(status.output)["migrations"])

    _, model_ids, tasks = setup_tracks(store, 4)
    results = [result(t) for t in tasks]
    store.write_results(results, model_ids)

    top = runner.invoke(main, ["query", "--tag", "jazz", "--top", "2", "--format", "json"], env=env)
    assert top.exit_code == 0, top.output
    rows = [json.loads(line) for line in top.output.splitlines()]
    assert len(rows) == 2 and rows[0]["score"] >= rows[1]["score"] and rows[0]["model"] == "m1"

    track = runner.invoke(main, ["query", "--track", tasks[0].uri, "--format", "json"], env=env)
    assert {json.loads(line)["tag"] for line in track.output.splitlines()} == set(LABELS)
    table = runner.invoke(main, ["query", "--track", tasks[0].uri], env=env)
    assert table.exit_code == 0 and "jazz" in table.output

    assert runner.invoke(main, ["query"], env=env).exit_code == 2


def test_unreachable_database_is_a_one_line_error() -> None:
    out = CliRunner().invoke(main, ["query", "--tag", "x", "--database-url", "postgresql://postgres@127.0.0.1:1/none"])
    assert out.exit_code == 2 and "store_error" in out.output
