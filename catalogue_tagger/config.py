"""Settings: one frozen object holding every setting, read from the environment in one place.

:meth:`Settings.from_env` is the only reader of ``os.environ`` in the library and the code location. The CLI
overrides fields with ``dataclasses.replace``; the Dagster resources are built from the same object. Secrets
(the database URL) come from the environment only and never show in ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from catalogue_tagger.errors import SettingsError

DEFAULT_MODELS = ("musicnn-mtt", "samplecnn-mtt")  # the registry specs with default=True
DEFAULT_BATCH_SIZE = 64
DEFAULT_PARTITION_START = "2020-01-01"
DEFAULT_MAX_FAILURE_RATE = 0.05
BACKENDS = ("torch", "onnx", "tensorrt", "auto")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
EXECUTORS = ("multiprocess", "in_process", "k8s")
# A decode worker keeps about a third of a core busy while inference is the bottleneck: decoding runs 2-4x
# faster than the networks (README, Benchmarks), so the worker waits on a full queue the rest of the time.
# On 2 cores with one worker, 2 inference threads ran the whole job 1.3-1.45x faster than 1 (benchmarks/speed_vs_tf.py).
DECODE_WORKER_CORES = 1 / 3


def default_home() -> Path:
    """Where catalogue-tagger keeps its own state when ``CATALOGUE_TAGGER_HOME`` is unset.

    As root we stay out of ``/root``: the embedded server runs as an unprivileged user and needs to traverse
    every parent of its data directory.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/catalogue-tagger")
    return Path(platformdirs.user_data_dir("catalogue-tagger"))


def default_workers() -> int:
    """Decode processes: every core but one, which inference keeps; at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


def split_names(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _setting(env: str, doc: str, parse: Callable[[str], Any] = str, **kwargs: Any) -> Any:
    """A field read from the variable ``env`` (parsed by ``parse``), documented by ``doc``."""
    return field(metadata={"env": env, "doc": doc, "parse": parse}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Every setting of catalogue-tagger. Field order is the order of the README's table."""

    source: str | None = _setting(
        "CATALOGUE_TAGGER_SOURCE", "Where the audio lives: a folder, `file://…` or `s3://bucket/prefix`.", default=None
    )
    database_url: str | None = _setting(
        "CATALOGUE_TAGGER_DATABASE_URL", "Postgres URL; unset: the embedded Postgres, started on demand.",
        default=None, repr=False,
    )
    database_retry_s: float = _setting(
        "CATALOGUE_TAGGER_DATABASE_RETRY_S", "Seconds a write whose database connection was lost (a server restart) "
        "is retried before the run fails.", float, default=60.0,
    )
    s3_endpoint_url: str | None = _setting(
        "AWS_ENDPOINT_URL", "S3 endpoint of an S3-compatible store (MinIO, Ceph …); unset: AWS.", default=None
    )
    models: tuple[str, ...] = _setting(
        "CATALOGUE_TAGGER_MODELS", "Comma-separated model names that `tag` runs.", split_names, default=DEFAULT_MODELS
    )
    backend: str = _setting(
        "CATALOGUE_TAGGER_BACKEND", "Inference backend: auto (per model, the fastest present for the device and "
        "precision; on a CPU, float32 takes the backend timed fastest on this machine, recorded in the artifact "
        "folder; `bench` measures again and shows the choice), torch, onnx or tensorrt.", default="auto",
    )
    device: str = _setting("CATALOGUE_TAGGER_DEVICE", "cpu or cuda[:N].", default="cpu")
    precision: str = _setting(
        "CATALOGUE_TAGGER_PRECISION", "Numeric precision of inference: fp32; bf16 (CPU with AVX512-BF16 or AMX, "
        "CUDA); fp16 (CUDA); int8 (ONNX Runtime: a static QDQ graph calibrated on real music by `compile --precision "
        "int8 --calibration DIR`). Recorded with every score (a model version per precision).", default="fp32"
    )
    inference_threads: int | None = _setting(
        "CATALOGUE_TAGGER_INFERENCE_THREADS", "CPU threads running inference. Default: the cores the decode workers "
        "leave free, a worker counted as a third of a core (2 cores, 1 worker: 2).", int, default=None,
    )
    batch_size: int = _setting(
        "CATALOGUE_TAGGER_BATCH_SIZE", "Segments per inference batch (and the max batch of compiled engines).", int,
        default=DEFAULT_BATCH_SIZE,
    )
    workers: int = _setting(
        "CATALOGUE_TAGGER_WORKERS", "Decode processes (0: decode inline). Default: cores − 1.", int,
        default_factory=default_workers,
    )
    max_duration_s: float | None = _setting(
        "CATALOGUE_TAGGER_MAX_DURATION", "Decode at most this many seconds of a track (unset: all).", float,
        default=None,
    )
    max_bytes: int | None = _setting(
        "CATALOGUE_TAGGER_MAX_BYTES", "Objects larger than this fail as `too_large` before decoding (unset: no limit).",
        int, default=None,
    )
    descriptors: bool = _setting(
        "CATALOGUE_TAGGER_DESCRIPTORS", "Measure tempo, key and loudness in the decode pass (`track_descriptors`).",
        _bool, default=True,
    )
    keep_segments: bool = _setting(
        "CATALOGUE_TAGGER_SEGMENTS", "Also store per-segment scores (`segment_scores`).", _bool, default=False
    )
    home: Path = _setting(
        "CATALOGUE_TAGGER_HOME", "State folder: embedded Postgres, engine cache. Default: /var/lib/catalogue-tagger "
        "as root, else the user data dir.", Path, default_factory=default_home,
    )
    engine_cache: Path | None = _setting(
        "CATALOGUE_TAGGER_ENGINE_CACHE", "Folder of compiled ONNX graphs and TensorRT engines. Default: HOME/engines.",
        Path, default=None,
    )
    partition_start: str = _setting(
        "CATALOGUE_TAGGER_PARTITION_START", "First upload day (UTC) with a Dagster partition.",
        default=DEFAULT_PARTITION_START,
    )
    shards: int = _setting(
        "CATALOGUE_TAGGER_SHARDS", "Hash shards per upload day in Dagster (1: none).", int, default=1
    )
    executor: str = _setting(
        "CATALOGUE_TAGGER_EXECUTOR", "Dagster executor: multiprocess, in_process or k8s.", default="multiprocess"
    )
    gpus: int = _setting("CATALOGUE_TAGGER_GPUS", "GPUs the Dagster tagging step requests on Kubernetes.", int, default=0)
    max_failure_rate: float = _setting(
        "CATALOGUE_TAGGER_MAX_FAILURE_RATE", "Failed share of a partition above which its Dagster check warns.", float,
        default=DEFAULT_MAX_FAILURE_RATE,
    )
    schedule_running: bool = _setting(
        "CATALOGUE_TAGGER_SCHEDULE_RUNNING", "Whether the nightly Dagster schedule starts out running.", _bool,
        default=False,
    )
    dagster_graphql_url: str | None = _setting(
        "DAGSTER_GRAPHQL_URL", "Dagster webserver that `catalogue-tagger-backfill` launches asset backfills through.",
        default=None,
    )
    dagster_home: Path | None = _setting(
        "DAGSTER_HOME", "Dagster instance folder that `catalogue-tagger-backfill` submits job backfills to.", Path,
        default=None,
    )

    def __post_init__(self) -> None:
        checks = (
            (self.backend in BACKENDS, f"backend {self.backend!r}: choose one of {', '.join(BACKENDS)}"),
            (self.precision in PRECISIONS, f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}"),
            (self.executor in EXECUTORS, f"executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}"),
            (self.device == "cpu" or self.device.startswith("cuda"), f"device {self.device!r}: cpu or cuda[:N]"),
            (self.batch_size >= 1, f"batch size {self.batch_size}: at least 1"),
            (self.workers >= 0, f"workers {self.workers}: 0 or more"),
            (self.inference_threads is None or self.inference_threads >= 1,
             f"inference threads {self.inference_threads}: at least 1"),
            (self.shards >= 1, f"shards {self.shards}: at least 1"),
            (self.gpus >= 0, f"gpus {self.gpus}: 0 or more"),
            (self.database_retry_s >= 0, f"database retry {self.database_retry_s} s: 0 or more"),
            (bool(self.models), "no models selected"),
            (0.0 <= self.max_failure_rate <= 1.0, f"max failure rate {self.max_failure_rate}: between 0 and 1"),
        )
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``CATALOGUE_TAGGER_*`` (and ``AWS_ENDPOINT_URL``, ``DAGSTER_*``); unset or empty: default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"], "")
            if not raw:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{f.metadata['env']}={raw!r}: {exc}") from exc
        return cls(**values)

    @staticmethod
    def child_environment(**overrides: str) -> dict[str, str]:
        """This process's environment plus ``overrides``: what a child process (Dagster's CLI) is given."""
        return {**os.environ, **overrides}

    @property
    def threads(self) -> int:
        """CPU inference threads: ``inference_threads``, else the cores the decode workers leave free, counting
        each worker as :data:`DECODE_WORKER_CORES` of a core (at least 1)."""
        if self.inference_threads is not None:
            return self.inference_threads
        return max(1, round((os.cpu_count() or 1) - self.workers * DECODE_WORKER_CORES))

    @property
    def engine_dir(self) -> Path:
        """The folder of compiled artifacts."""
        return self.engine_cache if self.engine_cache is not None else self.home / "engines"

    @classmethod
    def variables(cls) -> list[tuple[str, str, str, str]]:
        """(field, variable, default as the README shows it, meaning) for every setting, in field order."""
        rows = []
        for f in fields(cls):
            if f.default is MISSING:
                shown = "computed"
            elif f.default is None:
                shown = "unset"
            elif isinstance(f.default, tuple):
                shown = ",".join(f.default)
            else:
                shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
            rows.append((f.name, f.metadata["env"], shown, f.metadata["doc"]))
        return rows
