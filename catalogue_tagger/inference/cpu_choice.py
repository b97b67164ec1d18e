"""``--backend auto`` on a CPU: per model, the backend measured fastest on this machine.

Which of torch and ONNX Runtime runs a network faster in float32 depends on the CPU as much as on the network:
``musicnn-mtt`` ran at 43–46 segments/s in torch against 38–44 in ONNX Runtime on a 2-core Xeon with
AVX512-BF16, and at 29–31 against 36–43 on a 2-core EPYC with AVX2 (docs/performance.md). So the first ``auto``
resolution of a model on a CPU times both backends and keeps the verdict in :data:`VERDICTS_FILE` in the
artifact folder, under a key of everything that could change it (:func:`verdict_key`: the CPU, the inference
threads, the model's weights, the versions of torch, ONNX Runtime and this package). Later runs on the machine
read it; ``catalogue-tagger bench`` measures again and replaces it.

A measurement opens each backend once (ONNX Runtime's graph is exported then when it is not cached yet, as on
its first use anyway), runs a warm-up batch, then :data:`ROUNDS` alternating rounds of one batch of
``threads x CPU_MICRO_BATCH`` segments of seeded noise (float32 speed does not depend on what the samples are);
a backend's figure is its best round. It takes seconds per model, once per machine.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from catalogue_tagger.config import Settings
from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.models.specs import get_spec

logger = logging.getLogger(__name__)

VERDICTS_FILE = "cpu-backends.json"
CANDIDATES = ("torch", "onnx")
ROUNDS = 3

# Verdicts this process measured but could not write down (a read-only artifact folder).
_unrecorded: dict[tuple[Path, str], CpuVerdict] = {}


@dataclass(frozen=True)
class CpuVerdict:
    """What a measurement found: the faster backend, every candidate's best segments/s, and why one failed."""

    backend: str
    segments_per_s: dict[str, float]
    failed: dict[str, str]
    measured_at: str  # ISO 8601, UTC

    @classmethod
    def from_dict(cls, data: Any) -> CpuVerdict | None:
        """The verdict a file recorded, or None when ``data`` is not one (absent, or written by hand wrongly)."""
        try:
            verdict = cls(str(data["backend"]), {str(k): float(v) for k, v in data["segments_per_s"].items()},
                          {str(k): str(v) for k, v in data["failed"].items()}, str(data["measured_at"]))
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        return verdict if verdict.backend in verdict.segments_per_s else None

    def reason(self) -> str:
        figures = ", ".join(f"{name} {speed:.1f}" for name, speed in
                            sorted(self.segments_per_s.items(), key=lambda item: -item[1]))
        failures = "".join(f"; {name} failed: {why}" for name, why in self.failed.items())
        return f"auto: fastest measured on this CPU ({figures} segments/s, {self.measured_at[:10]}{failures})"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def verdict_key(model: str, threads: int) -> str:
    """Everything a verdict depends on: a change to any of it measures again."""
    parts = (f"cpu={cpu_name()}", f"cores={os.cpu_count()}", f"threads={threads}", f"model={model}",
             f"weights={get_spec(model).weights_sha256[:16]}", f"torch={_version('torch')}",
             f"onnxruntime={_version('onnxruntime')}", f"catalogue-tagger={_version('catalogue-tagger')}")
    return " ".join(parts)


def cpu_verdict(model: str, settings: Settings, *, refresh: bool = False) -> CpuVerdict:
    """The recorded verdict for ``model`` on this machine under ``settings`` (float32 on the CPU), measured and
    recorded first when there is none (or when ``refresh``)."""
    path = settings.engine_dir / VERDICTS_FILE
    key = verdict_key(model, settings.threads)
    if not refresh:
        recorded = CpuVerdict.from_dict(_load(path).get(key)) or _unrecorded.get((path, key))
        if recorded is not None:
            return recorded
    verdict = measure(model, settings)
    if not _record(path, key, verdict):
        _unrecorded[(path, key)] = verdict  # a run resolves a model more than once: measure it only once
    return verdict


def measure(model: str, settings: Settings) -> CpuVerdict:
    """Time every candidate backend on ``model`` (module docstring); raises :class:`BackendUnavailable` when none
    of them opens."""
    from catalogue_tagger.inference.base import CPU_MICRO_BATCH, Backend, open_backend

    spec = get_spec(model)
    rows = settings.threads * CPU_MICRO_BATCH
    batch = (np.random.default_rng(0).standard_normal((rows, spec.window)) * 0.1).astype(np.float32)
    opened: dict[str, Backend] = {}
    failed: dict[str, str] = {}
    best: dict[str, float] = {}
    try:
        for name in CANDIDATES:
            try:
                opened[name] = open_backend(model, replace(settings, backend=name, precision="fp32"))
                opened[name].run(batch)  # warm-up: first-call allocations and kernel selection
            except Exception as exc:  # a candidate that cannot run here is not chosen; the other may
                failed[name] = f"{type(exc).__name__}: {exc}"
                opened.pop(name, None)
        for _ in range(ROUNDS):
            for name, backend in opened.items():  # alternating: a load that comes and goes hits both
                started = time.perf_counter()
                backend.run(batch)
                best[name] = max(best.get(name, 0.0), rows / (time.perf_counter() - started))
    finally:
        for backend in opened.values():
            backend.close()
    if not best:
        raise BackendUnavailable(f"{model}: no CPU backend could run it: " +
                                 "; ".join(f"{name}: {why}" for name, why in failed.items()))
    fastest = max(best, key=best.__getitem__)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return CpuVerdict(fastest, {name: round(speed, 2) for name, speed in best.items()}, failed, stamp)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable (%s); backends are measured again", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _record(path: Path, key: str, verdict: CpuVerdict) -> bool:
    """Add ``verdict`` to the file, atomically (another process writing at the same time loses at most its own
    entry, which is then measured again); whether it was written. A folder that cannot be written only costs the
    record."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        verdicts = {**_load(path), key: asdict(verdict)}
        fd, tmp = tempfile.mkstemp(prefix=".cpu-backends-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(verdicts, out, indent=1, sort_keys=True)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already once replaced
    except OSError as exc:
        logger.warning("%s: cannot record the backend verdict (%s); it is measured again next run", path, exc)
        return False
    return True
