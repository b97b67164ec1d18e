"""Integration fixtures: a real moto S3 server on 127.0.0.1 (HTTP, so worker processes can reach it too)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from store_factories import LEASES

AUDIO_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
_AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(autouse=True)
def _give_back_run_leases() -> Iterator[None]:
    """Leases of runs a test started with ``store_factories.start_run`` end with the test."""
    yield
    while LEASES:
        LEASES.pop().close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server, with fake credentials in the environment for the session.

    ``AWS_ENDPOINT_URL`` is left unset: code under test is given the endpoint explicitly (or a test sets it).
    """
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _AWS_ENV.items():
            mp.setenv(name, value)
        for name in _AWS_UNSET:
            mp.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_client(s3_server: str) -> Iterator[Any]:
    """A plain boto3 S3 client for the moto server, for test setup."""
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """The name of a fresh, empty bucket on the moto server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def audio_fixtures() -> Path:
    """The folder of committed audio fixtures (see its README)."""
    return AUDIO_FIXTURES
