"""The code location through Dagster's own command line, the backfill command, and ``dagster dev``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalogue_tagger.store.store import Store
from dagster_catalogue import DAY_1, DAY_2, START

BIN = Path(sys.executable).parent


@pytest.fixture
def dagster_env(tmp_path: Path, catalogue: Path, fresh_database_url: str) -> dict[str, str]:
    """Environment of a Dagster process: the catalogue folder, a fresh database and a throwaway instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # runs start at once, without a daemon (a deployment uses the queued coordinator of deploy/dagster.yaml)
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("CATALOGUE_TAGGER_")}
    env.update(
        DAGSTER_HOME=str(home),
        CATALOGUE_TAGGER_SOURCE=str(catalogue),
        CATALOGUE_TAGGER_DATABASE_URL=fresh_database_url,
        CATALOGUE_TAGGER_PARTITION_START=START,
        CATALOGUE_TAGGER_WORKERS="0",
    )
    return env


def _dagster(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dagster"), *args], env=env, cwd=env["DAGSTER_HOME"], capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def _status(database_url: str, *days: str) -> list[dict[str, int]]:
    with Store.connect(database_url) as store:
        return [store.partition_status(day) for day in days]


def test_definitions_validate(dagster_env: dict[str, str]) -> None:
    for shards in ("1", "4"):
        done = _dagster({**dagster_env, "CATALOGUE_TAGGER_SHARDS": shards}, "definitions", "validate", "-m", "dagster_defs")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "All code locations passed validation" in done.stderr + done.stdout


def test_asset_materialize_tags_exactly_that_day(dagster_env: dict[str, str], fresh_database_url: str) -> None:
    done = _dagster(
        dagster_env, "asset", "materialize", "-m", "dagster_defs",
        "--select", "discovered_tracks,track_tags", "--partition", DAY_1,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    day_1, day_2 = _status(fresh_database_url, DAY_1, DAY_2)
    assert day_1 == {"total": 2, "tagged": 2, "failed": 0, "pending": 0}
    assert day_2["total"] == 0


def test_backfill_command_tags_both_partitions(dagster_env: dict[str, str], fresh_database_url: str) -> None:
    done = subprocess.run(
        [str(BIN / "catalogue-tagger-backfill"), "--from", DAY_1, "--to", DAY_2],
        env=dagster_env, cwd=dagster_env["DAGSTER_HOME"], capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "2 partitions, COMPLETED_SUCCESS" in done.stdout
    day_1, day_2 = _status(fresh_database_url, DAY_1, DAY_2)
    assert (day_1["tagged"], day_2["tagged"]) == (2, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload: dict[str, Any] = json.load(response)
    return payload


@pytest.fixture
def dagster_dev(dagster_env: dict[str, str]) -> Iterator[str]:
    """``dagster dev`` (webserver and daemon) on a free local port; yields its GraphQL URL."""
    port = _free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-m", "dagster_defs", "-h", "127.0.0.1", "-p", str(port)],
        env=dagster_env, cwd=dagster_env["DAGSTER_HOME"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if "data" in _graphql(url, "{ version }"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert process.poll() is None, "dagster dev exited"
            assert time.monotonic() < deadline, "dagster dev did not answer in time"
            time.sleep(2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


ASSETS_QUERY = """
{ assetNodes { assetKey { path } isPartitioned assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""


def test_dagster_dev_shows_the_assets(dagster_dev: str) -> None:
    deadline = time.monotonic() + 120
    while True:  # the code location loads after the webserver answers
        nodes = _graphql(dagster_dev, ASSETS_QUERY).get("data", {}).get("assetNodes")
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(2)
    by_key = {"/".join(node["assetKey"]["path"]): node for node in nodes}
    assert set(by_key) == {"discovered_tracks", "track_tags"}
    assert all(node["isPartitioned"] for node in by_key.values())
    checks = {check["name"] for check in by_key["track_tags"]["assetChecksOrError"]["checks"]}
    assert checks == {"every_track_tagged_or_failed", "scores_in_range", "failure_rate_below_threshold"}


def test_backfill_through_the_webserver_tags_both_partitions(
    dagster_dev: str, dagster_env: dict[str, str], fresh_database_url: str
) -> None:
    done = subprocess.run(
        [str(BIN / "catalogue-tagger-backfill"), "--from", DAY_1, "--to", DAY_2, "--graphql-url", dagster_dev],
        env=dagster_env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    day_1, day_2 = _status(fresh_database_url, DAY_1, DAY_2)
    assert (day_1["tagged"], day_2["tagged"]) == (2, 1)


def test_backfill_command_checks_its_arguments(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dagster_defs.cli import main

    runner = CliRunner()
    backwards = runner.invoke(main, ["--from", DAY_2, "--to", DAY_1, "--dagster-home", str(tmp_path)])
    assert backwards.exit_code != 0 and "before --from" in backwards.output
    nowhere = runner.invoke(main, ["--from", DAY_1, "--to", DAY_2], env={"DAGSTER_HOME": ""})
    assert nowhere.exit_code == 2 and "--graphql-url" in nowhere.output


def test_backfill_partition_keys_cover_every_shard_of_every_day() -> None:
    from datetime import date

    from dagster_defs.backfill import partition_keys
    from dagster_defs.partitions import PartitionScheme

    assert partition_keys(date(2024, 5, 1), date(2024, 5, 2), PartitionScheme()) == [DAY_1, DAY_2]
    assert partition_keys(date(2024, 5, 1), date(2024, 5, 1), PartitionScheme(shards=2)) == [f"{DAY_1}|0", f"{DAY_1}|1"]
