"""Backfills of a range of upload days, for ``catalogue-tagger backfill``.

Two ways in, both Dagster's own:

* ``graphql_url`` given: an asset backfill of ``discovered_tracks`` and ``track_tags`` through the webserver's
  ``launchPartitionBackfill`` mutation. The daemon runs it; it shows in the UI like one launched there.
* otherwise: ``dagster job backfill`` of the ``tag_partition`` job against the instance in ``dagster_home``
  (runs go to that instance's run coordinator: with a queued coordinator the daemon launches them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from catalogue_tagger.config import Settings

from dagster_defs.assets import DISCOVERED_TRACKS, FORCE_TAG, TRACK_TAGS
from dagster_defs.definitions import TAG_PARTITION_JOB
from dagster_defs.partitions import PartitionScheme

BACKFILL_TAG = "dagster/backfill"
_LAUNCHED = re.compile(r"Launched backfill job `([^`]+)`")
_TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING_DONE"}

_LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""
_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}
"""


class BackfillError(Exception):
    """A backfill could not be launched, or did not succeed."""


@dataclass(frozen=True)
class BackfillResult:
    backfill_id: str
    partition_keys: list[str]
    status: str  # the backfill's (GraphQL) or a summary of its runs' statuses; "LAUNCHED" without waiting


def days_between(first: date, last: date) -> list[str]:
    if last < first:
        raise BackfillError(f"--to {last} is before --from {first}")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def partition_keys(first: date, last: date, scheme: PartitionScheme) -> list[str]:
    return [key for day in days_between(first, last) for key in scheme.keys(day)]


def _tags(force: bool) -> dict[str, str]:
    return {FORCE_TAG: "true"} if force else {}


def launch_graphql(
    url: str,
    keys: Sequence[str],
    *,
    force: bool = False,
    wait: bool,
    poll_s: float = 5.0,
    timeout_s: float = 86400.0,
) -> BackfillResult:
    """An asset backfill through the webserver at ``url`` (``http://host:port/graphql``)."""
    params = {
        "partitionNames": list(keys),
        "assetSelection": [{"path": key.path} for key in (DISCOVERED_TRACKS, TRACK_TAGS)],
        "fromFailure": False,
        "tags": [{"key": key, "value": value} for key, value in _tags(force).items()],
    }
    answer = _post(url, _LAUNCH, {"params": params})["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"launchPartitionBackfill: {answer}")
    backfill_id = answer["backfillId"]
    status = "LAUNCHED"
    deadline = time.monotonic() + timeout_s
    while wait and status not in _TERMINAL:
        if time.monotonic() > deadline:
            raise BackfillError(f"backfill {backfill_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
        result = _post(url, _STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise BackfillError(f"backfill {backfill_id}: {result}")
        status = result["status"]
    return BackfillResult(backfill_id, list(keys), status)


def launch_job_backfill(
    keys: Sequence[str],
    *,
    dagster_home: str,
    target: Sequence[str] = ("-m", "dagster_defs"),
    force: bool = False,
    wait: bool,
    poll_s: float = 5.0,
    timeout_s: float = 86400.0,
    echo: Callable[[str], None] = print,
) -> BackfillResult:
    """``dagster job backfill`` of the tag job over ``keys``, on the instance configured in ``dagster_home``."""
    command = [sys.executable, "-m", "dagster", "job", "backfill", *target, "-j", TAG_PARTITION_JOB,
               "--partitions", ",".join(keys), "--noprompt"]  # fmt: skip
    if force:
        command += ["--tags", json.dumps(_tags(force))]
    environment = Settings.child_environment(DAGSTER_HOME=dagster_home)
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    match = _LAUNCHED.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise BackfillError(f"dagster job backfill failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    backfill_id = match.group(1)
    echo(f"backfill {backfill_id}: {len(keys)} partitions submitted")
    status = "LAUNCHED"
    if wait:
        status = _wait_for_runs(dagster_home, backfill_id, len(keys), poll_s=poll_s, timeout_s=timeout_s)
    return BackfillResult(backfill_id, list(keys), status)


def _wait_for_runs(dagster_home: str, backfill_id: str, expected: int, *, poll_s: float, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        while True:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
            statuses = [run.status for run in runs]
            if len(statuses) >= expected and all(status.name in _RUN_DONE for status in statuses):
                failed = sum(status != dg.DagsterRunStatus.SUCCESS for status in statuses)
                return "COMPLETED_SUCCESS" if failed == 0 else f"COMPLETED_FAILED ({failed} of {len(statuses)} runs)"
            if time.monotonic() > deadline:
                raise BackfillError(f"backfill {backfill_id}: runs still going after {timeout_s:.0f} s")
            time.sleep(poll_s)


_RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def _post(url: str, query: str, variables: dict[str, object]) -> dict[str, dict[str, str]]:
    body = json.dumps({"query": query, "variables": variables}).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (the operator's own webserver)
        payload = json.load(response)
    if payload.get("errors"):
        raise BackfillError(f"{url}: {payload['errors'][0].get('message', payload['errors'])}")
    data: dict[str, dict[str, str]] = payload["data"]
    return data
