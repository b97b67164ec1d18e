"""One Settings object: read from the environment in one place, documented in the README, and a library that
never reaches into Dagster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from catalogue_tagger.config import DEFAULT_MODELS, Settings
from catalogue_tagger.errors import SettingsError

REPO = Path(__file__).resolve().parents[2]


def _readme_table() -> list[tuple[str, str, str, str]]:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- settings-table:", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    parsed = []
    for row in rows:
        variable, setting, default, meaning = (cell.strip() for cell in row.strip("|").split(" | "))
        parsed.append((setting.strip("`"), variable.strip("`"), default, meaning))
    return parsed


def test_readme_settings_table_equals_the_settings_fields() -> None:
    assert _readme_table() == Settings.variables()
    assert [name for name, *_ in Settings.variables()] == [f.name for f in fields(Settings)]


def test_every_field_is_read_from_its_variable() -> None:
    env = {
        "CATALOGUE_TAGGER_SOURCE": "s3://bucket/masters", "CATALOGUE_TAGGER_DATABASE_URL": "postgresql://u:p@h/db",
        "CATALOGUE_TAGGER_DATABASE_RETRY_S": "5", "CATALOGUE_TAGGER_DESCRIPTORS": "no",
        "AWS_ENDPOINT_URL": "http://minio:9000", "CATALOGUE_TAGGER_MODELS": " vgg-mtt, musicnn-msd ,",
        "CATALOGUE_TAGGER_BACKEND": "onnx", "CATALOGUE_TAGGER_DEVICE": "cuda:1", "CATALOGUE_TAGGER_PRECISION": "fp16",
        "CATALOGUE_TAGGER_INFERENCE_THREADS": "3",
        "CATALOGUE_TAGGER_BATCH_SIZE": "128", "CATALOGUE_TAGGER_WORKERS": "0", "CATALOGUE_TAGGER_MAX_DURATION": "600",
        "CATALOGUE_TAGGER_MAX_BYTES": "1000000", "CATALOGUE_TAGGER_SEGMENTS": "yes", "CATALOGUE_TAGGER_HOME": "/srv/ct",
        "CATALOGUE_TAGGER_ENGINE_CACHE": "/cache", "CATALOGUE_TAGGER_PARTITION_START": "2024-01-01",
        "CATALOGUE_TAGGER_SHARDS": "4", "CATALOGUE_TAGGER_EXECUTOR": "k8s", "CATALOGUE_TAGGER_GPUS": "2",
        "CATALOGUE_TAGGER_MAX_FAILURE_RATE": "0.1", "CATALOGUE_TAGGER_SCHEDULE_RUNNING": "true",
        "DAGSTER_GRAPHQL_URL": "http://dagster/graphql", "DAGSTER_HOME": "/opt/dagster",
    }
    assert set(env) == {variable for _, variable, _, _ in Settings.variables()}
    settings = Settings.from_env(env)
    assert settings == Settings(
        source="s3://bucket/masters", database_url="postgresql://u:p@h/db", database_retry_s=5.0, descriptors=False, s3_endpoint_url="http://minio:9000",
        models=("vgg-mtt", "musicnn-msd"), backend="onnx", device="cuda:1", precision="fp16", inference_threads=3,
        batch_size=128,
        workers=0, max_duration_s=600.0, max_bytes=1_000_000, keep_segments=True, home=Path("/srv/ct"),
        engine_cache=Path("/cache"), partition_start="2024-01-01", shards=4, executor="k8s", gpus=2,
        max_failure_rate=0.1, schedule_running=True, dagster_graphql_url="http://dagster/graphql",
        dagster_home=Path("/opt/dagster"),
    )
    assert settings.engine_dir == Path("/cache")
    assert settings.threads == 3


def test_inference_threads_default_to_the_cores_decode_workers_leave_free() -> None:
    cores = os.cpu_count() or 1
    assert Settings(workers=0).threads == cores
    assert Settings(workers=3).threads == max(1, cores - 1)  # three decode workers take about one core
    assert Settings(workers=3 * cores + 9).threads == 1
    assert Settings(workers=1, inference_threads=2).threads == 2
    with pytest.raises(SettingsError, match="inference threads"):
        Settings(inference_threads=0)


def test_unset_or_empty_variables_mean_the_defaults() -> None:
    settings = Settings.from_env({"CATALOGUE_TAGGER_MODELS": "", "CATALOGUE_TAGGER_BATCH_SIZE": ""})
    assert settings.models == DEFAULT_MODELS and settings.batch_size == 64 and settings.workers >= 1
    assert settings.engine_dir == settings.home / "engines"


@pytest.mark.parametrize(("variable", "value"), [
    ("CATALOGUE_TAGGER_BATCH_SIZE", "many"), ("CATALOGUE_TAGGER_BATCH_SIZE", "0"),
    ("CATALOGUE_TAGGER_BACKEND", "tensorflow"), ("CATALOGUE_TAGGER_SEGMENTS", "perhaps"),
    ("CATALOGUE_TAGGER_DEVICE", "tpu"), ("CATALOGUE_TAGGER_MAX_FAILURE_RATE", "2"),
])
def test_a_bad_value_is_a_settings_error(variable: str, value: str) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({variable: value})


def test_the_database_url_never_shows_in_repr() -> None:
    settings = Settings(database_url="postgresql://tagger:hunter2@db/catalogue")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(replace(settings, batch_size=8))


def test_only_settings_reads_the_environment() -> None:
    readers = []
    for folder in ("catalogue_tagger", "dagster_defs"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"os\.environ|os\.getenv|envvar=", line):
                    readers.append(f"{path.relative_to(REPO)}:{number}")
    assert readers and all(reader.startswith("catalogue_tagger/config.py:") for reader in readers), readers


BLOCKER = """
import importlib, importlib.abc, pkgutil, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dagster", "dagster_defs", "dagster_k8s", "dagster_postgres"):
            raise ImportError(f"the library imported {name}")
        return None

sys.meta_path.insert(0, Block())
import catalogue_tagger
names = [m.name for m in pkgutil.walk_packages(catalogue_tagger.__path__, "catalogue_tagger.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_no_library_module_imports_dagster() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 40  # every module of the library was imported
