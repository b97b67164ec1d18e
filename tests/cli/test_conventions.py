"""CLI conventions, through the installed command as a user runs it: exit 0 on success, 1 when the command ran
but some inputs failed, 2 for a usage error or a command that could not run; one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = str(Path(sys.executable).parent / "catalogue-tagger")
AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"  # nothing listens on port 1


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CATALOGUE_TAGGER_")}
    environment.update(env)
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, env=environment, timeout=300, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert all(word in done.stderr for word in words), done.stderr


@pytest.mark.parametrize("args", [
    ("predict", str(AUDIO / "excerpt.mp3"), "--model", "no-such-model"),
    ("tag", str(AUDIO), "--models", "no-such-model", "--database-url", NOWHERE),
    ("compile", "--model", "no-such-model", "--onnx-only"),
])
def test_an_unknown_model_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    assert_one_line_error(run(*args), 2, "no-such-model")


@pytest.mark.parametrize("args", [
    ("query", "--tag", "piano", "--database-url", NOWHERE),
    ("tag", str(AUDIO), "--database-url", NOWHERE, "--workers", "0"),
    ("db", "migrate", "--database-url", NOWHERE),
])
def test_an_unreachable_database_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    assert_one_line_error(run(*args), 2, "store_error")


def test_a_bad_setting_names_its_variable_and_exits_2() -> None:
    done = run("query", "--tag", "piano", CATALOGUE_TAGGER_BATCH_SIZE="many")
    assert_one_line_error(done, 2, "CATALOGUE_TAGGER_BATCH_SIZE", "many")


def test_usage_errors_exit_2() -> None:
    assert run("tag").returncode == 2  # no SOURCE and no CATALOGUE_TAGGER_SOURCE
    assert run("query").returncode == 2  # neither --tag nor --track


def test_predict_exits_1_when_some_files_failed_and_0_when_none_did() -> None:
    good, bad = str(AUDIO / "excerpt_0.5s.wav"), str(AUDIO / "corrupt.mp3")
    assert run("predict", good, "--model", "musicnn-mtt").returncode == 0
    done = run("predict", good, bad, "--model", "musicnn-mtt")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stdout.count('"error"') == 1 and done.stdout.count('"tags"') == 1
