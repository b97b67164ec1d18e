"""Credentials never leak: with a password in the database URL and AWS keys in the environment, run the
commands a user runs (db, tag, predict, query; their failure paths too) and a Dagster materialization, capture
every output (stdout, stderr, every log record at DEBUG — botocore's wire log included, which would print the
access key id and session token if :mod:`catalogue_tagger.sources.log_redaction` did not mask them — the database's ``runs``/``tracks``/``track_failures``
rows as JSON, the materializations' metadata) and look for the secret strings."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from catalogue_tagger.cli import main
from catalogue_tagger.config import Settings
from catalogue_tagger.store.store import Store

PASSWORD = "pw-Leak-Check-7f1c9"  # the test server trusts local connections, so any password is accepted
ACCESS_KEY = "AKIALEAKCHECK7F1C9XY"
SECRET_KEY = "aws-secret-Leak-Check-Zq9W"
SESSION_TOKEN = "aws-token-Leak-Check-Kp3"
SECRETS = (PASSWORD, SECRET_KEY, SESSION_TOKEN, ACCESS_KEY)


def _with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


class Capture:
    """Everything the commands said: outputs and log records, with the secrets found in each."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.outputs: list[str] = []

    def invoke(self, *args: str, expect: int | None = 0) -> Result:
        done = CliRunner().invoke(main, list(args), catch_exceptions=True)
        text = done.stdout + "\n" + done.stderr
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            text += "\n" + repr(done.exception)
        self.outputs.append(text)
        if expect is not None:
            assert done.exit_code == expect, (args[0], done.exit_code, text)
        return done

    def leaks(self) -> list[str]:
        found = [f"output: {s}" for text in self.outputs for s in _leaks(text)]
        for record in self.caplog.records:
            message = record.getMessage() + (self.caplog.handler.formatter.formatException(record.exc_info)
                                             if record.exc_info else "")
            found += [f"log {record.name}: {s}" for s in _leaks(message)]
        return found


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, s3_server: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    return s3_server


def _database_rows(url: str) -> str:
    with Store.connect(url) as store, store.connection() as conn:
        tables = ("runs", "tracks", "track_failures", "models")
        return json.dumps({t: [list(r) for r in conn.exec_driver_sql(
            f"SELECT row_to_json(x)::text FROM {t} x")] for t in tables})  # fixed table names, test-only


def test_no_command_shows_a_credential(
    secret_env: str, s3_client: Any, s3_bucket: str, database_factory: Callable[[], str], audio_fixtures: Path,
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    s3_server, url = secret_env, _with_password(database_factory())
    for name in ("excerpt_0.5s.wav", "corrupt.mp3"):
        s3_client.upload_file(str(audio_fixtures / name), s3_bucket, f"in/{name}")
    source = f"s3://{s3_bucket}/in/"
    unreachable = make_url(url).set(port=1).render_as_string(hide_password=False)
    caplog.clear()  # from here on, only what catalogue-tagger does (the setup client above is the test's own)
    capture = Capture(caplog)

    capture.invoke("db", "migrate", "--database-url", url)
    capture.invoke("db", "status", "--database-url", url)
    capture.invoke("tag", source, "--database-url", url, "--s3-endpoint-url", s3_server, "--models", "musicnn-mtt",
                   "--workers", "0", "--json")
    capture.invoke("tag", source, "--database-url", url, "--s3-endpoint-url", s3_server, "--models", "musicnn-mtt",
                   "--workers", "1", "--force")
    capture.invoke("predict", str(audio_fixtures / "excerpt_0.5s.wav"), str(audio_fixtures / "corrupt.mp3"),
                   "--model", "musicnn-mtt", expect=1)
    capture.invoke("query", "--tag", "piano", "--database-url", url)
    capture.invoke("query", "--track", f"{source}excerpt_0.5s.wav", "--database-url", url)
    # failure paths: an unreachable server, a bucket that does not exist, an endpoint that does not answer
    capture.invoke("query", "--tag", "piano", "--database-url", unreachable, expect=2)
    capture.invoke("tag", source, "--database-url", unreachable, "--models", "musicnn-mtt", "--workers", "0",
                   expect=2)
    capture.invoke("db", "migrate", "--database-url", unreachable, expect=2)
    capture.invoke("tag", f"s3://no-such-bucket-{s3_bucket}/", "--database-url", url, "--s3-endpoint-url", s3_server,
                   "--models", "musicnn-mtt", "--workers", "0", expect=2)

    rows = _database_rows(url)
    assert "fetch_error" in rows or "unsupported_format" in rows  # the corrupt object's failure is in there
    assert not _leaks(rows), rows
    assert not capture.leaks(), capture.leaks()
    assert any(r.name.startswith("botocore") for r in caplog.records)  # DEBUG records were captured at all


def test_a_dagster_materialization_shows_no_credential(
    secret_env: str, s3_client: Any, s3_bucket: str, database_factory: Callable[[], str], audio_fixtures: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import dagster as dg

    from dagster_defs import build_definitions
    from dagster_defs.definitions import TAG_PARTITION_JOB

    caplog.set_level(logging.DEBUG)
    url = _with_password(database_factory())
    s3_client.upload_file(str(audio_fixtures / "excerpt_0.5s.wav"), s3_bucket, "in/a.wav")
    s3_client.upload_file(str(audio_fixtures / "corrupt.mp3"), s3_bucket, "in/b.mp3")
    day = s3_client.head_object(Bucket=s3_bucket, Key="in/a.wav")["LastModified"].strftime("%Y-%m-%d")
    settings = Settings(database_url=url, source=f"s3://{s3_bucket}/in/", s3_endpoint_url=secret_env,
                        models=("musicnn-mtt",), workers=0, executor="in_process", partition_start="2024-01-01")
    caplog.clear()  # the setup client above is the test's own
    result = build_definitions(settings).resolve_job_def(TAG_PARTITION_JOB).execute_in_process(partition_key=day)
    assert result.success
    events = result.all_events
    metadata = [
        {k: str(v.value) for k, v in e.event_specific_data.materialization.metadata.items()}  # type: ignore[union-attr]
        for e in result.get_asset_materialization_events()
    ]
    assert metadata and any("tracks_tagged" in m for m in metadata)
    text = json.dumps(metadata) + "\n".join(str(e) for e in events) + _database_rows(url)
    assert not _leaks(text), _leaks(text)
    capture = Capture(caplog)
    assert not capture.leaks(), capture.leaks()
