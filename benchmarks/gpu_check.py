"""One-call GPU check: everything worth knowing about a fresh GPU machine, in one command of at most 8 minutes.

    make gpu-check                                   # or: python3 benchmarks/gpu_check.py
    OUT=/some/folder make gpu-check                  # results folder (default: ./gpu-check/)
    python3 benchmarks/gpu_check.py --device cuda:1  # another GPU

Writes ``OUT/gpu-check.json`` (every part's result, or why it failed) and ``OUT/gpu-check.log`` (every part's
output). Each part runs in its own process under its own time box; a part that fails or runs out of time is
recorded as such and the others still run. No network is needed: the audio is made here from the reference
clips committed under ``tests/fixtures/musicnn``.

- ``environment``: GPU name, driver, CUDA and cuDNN, torch / ONNX Runtime (and its providers) / TensorRT /
  onnx versions, CPU cores, commit;
- ``corpus``: the clips looped into one-minute 44.1 kHz stereo MP3s, hard-linked into a few hours of audio;
- ``pytest``: ``tests/gpu`` (torch CUDA, ONNX Runtime CUDA and TensorRT against the CPU), outcome per test;
- ``decode``: the decode-only ceiling, × realtime with every core (``catalogue_tagger.bench.decode_only``);
- ``inference``: segments/s of each model × backend (torch; ONNX Runtime when its CUDA provider exists;
  TensorRT when importable) × precision (fp32, fp16, bf16) on full batches of reference-clip windows, with the
  max |Δ| of the tag probabilities against the same backend's fp32 on the same batch;
- ``end_to_end``: ``tag`` of the corpus with musicnn-mtt + samplecnn-mtt on the device into a scratch
  database (the embedded Postgres unless ``--database-url``), and its ratio to the decode ceiling.

``--device cpu --quick`` runs every part on the CPU over a tiny corpus in about a minute: what the test runs
(``tests/integration/test_gpu_check.py``), proving the script end to end apart from CUDA. On a GPU machine
without the project's dependencies, see ``benchmarks/gpu_wheels.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO / "tests" / "fixtures" / "musicnn"
E2E_MODELS = ("musicnn-mtt", "samplecnn-mtt")
INFERENCE_MODELS = ("musicnn-mtt", "samplecnn-mtt")  # every backend and precision
TORCH_ONLY_MODELS = ("vgg-mtt", "musicnn-sota-mtt", "fcn-mtt", "crnn-mtt")  # torch, while the time box lasts
PRECISIONS = ("fp32", "fp16", "bf16")
BATCH = 64  # the pipeline's default batch size (and the max batch of the engines built here)


@dataclass(frozen=True)
class Run:
    """What every part is told: the device, the size of the run, where results go, when to stop."""

    device: str
    quick: bool
    out: Path
    database_url: str | None
    deadline: float  # time.time() by which the part should have returned

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def left(self) -> float:
        return self.deadline - time.time()


# --- parts (each runs in its own process and returns a JSON-able dict) ---------------------------------------


def environment(run: Run) -> dict[str, Any]:
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "numpy": np.__version__, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "cuda_available": torch.cuda.is_available(), "commit": _commit(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [{"name": torch.cuda.get_device_name(i),
                         "capability": "%d.%d" % torch.cuda.get_device_capability(i),
                         "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                        for i in range(torch.cuda.device_count())]
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = query.stdout.strip().splitlines() or query.stderr.strip()
    for name in ("onnxruntime", "onnx", "tensorrt", "av"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # a missing or broken package is a finding, not a failure of the part
            info[name] = f"not importable: {type(exc).__name__}: {exc}"
    if not str(info["onnxruntime"]).startswith("not"):
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return info


def corpus(run: Run) -> dict[str, Any]:
    """One-minute 44.1 kHz stereo MP3s looped from the reference clips, hard-linked into ``copies`` files."""
    import numpy as np
    import soxr
    from decode_bench import encode  # benchmarks/: this script's own folder

    distinct, seconds, copies = (2, 8.0, 4) if run.quick else (4, 60.0, 240)
    clips = [_read_clip(path) for path in sorted(CLIPS.glob("*.flac"))]
    music = np.concatenate([clip for clip in clips if len(clip) > 16000])
    folder = _corpus_dir(run)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sources = []
    for i in range(distinct):
        start = i * len(music) // distinct
        mono = np.resize(np.roll(music, -start), int(seconds * 16000))
        up = soxr.resample(mono, 16000, 44100, quality="HQ").astype(np.float32)
        sources.append(encode(folder / f".source_{i}.mp3", np.stack([up, up * 0.5]), "libmp3lame"))
    for k in range(copies):
        try:
            os.link(sources[k % distinct], folder / f"track_{k:04d}.mp3")
        except OSError:  # a file system without hard links
            shutil.copyfile(sources[k % distinct], folder / f"track_{k:04d}.mp3")
    for source in sources:
        source.unlink()
    return {"folder": str(folder), "files": copies, "distinct": distinct, "audio_s": copies * seconds,
            "format": "MP3, 44.1 kHz stereo"}


def pytest_gpu(run: Run) -> dict[str, Any]:
    report = run.out / "pytest-gpu.xml"
    command = [sys.executable, "-m", "pytest", "tests/gpu", "-q", "-rA", "-p", "no:cacheprovider",
               f"--junitxml={report}"]
    done = subprocess.run(command, cwd=REPO, timeout=max(10.0, run.left() - 5))
    print(f"pytest exit code {done.returncode}")
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        verdict = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        outcomes[name] = "passed" if verdict is None else (
            f"{verdict.tag}: {(verdict.get('message') or '').splitlines()[0][:300] if verdict.get('message') else ''}")
    counts = {kind: sum(o.split(":")[0] == kind for o in outcomes.values()) for kind in ("passed", "failure", "error",
                                                                                          "skipped")}
    return {"exit_code": done.returncode, "counts": counts, "tests": outcomes}


def decode(run: Run) -> dict[str, Any]:
    from catalogue_tagger.bench import decode_only
    from catalogue_tagger.sources import open_source

    folder = _corpus_dir(run)
    with open_source(str(folder)) as source:
        uris = [info.uri for info in source.list()]
    workers = min(2, os.cpu_count() or 1) if run.quick else (os.cpu_count() or 1)
    result = decode_only(str(folder), uris, workers)
    return {**result, "workers": workers, "files": len(uris)}


def inference(run: Run) -> dict[str, Any]:
    """Every model × backend × precision that fits the time box, in order of importance."""
    import importlib.util

    combos = [(b, m, p) for b in _backends(run) for m in INFERENCE_MODELS for p in PRECISIONS]
    combos += [("torch", m, p) for m in TORCH_ONLY_MODELS for p in PRECISIONS]
    if run.quick:
        combos = [c for c in combos if c[1] in INFERENCE_MODELS and c[0] != "tensorrt"]
    results: list[dict[str, Any]] = []
    baselines: dict[tuple[str, str], Any] = {}
    trt = importlib.util.find_spec("tensorrt") is not None
    for backend, model, precision in combos:
        entry: dict[str, Any] = {"backend": backend, "model": model, "precision": precision}
        need = 90.0 if backend == "tensorrt" else 15.0  # an engine build takes a minute
        if run.left() < need:
            entry["status"] = "skipped: time box"
        elif backend == "tensorrt" and not trt:
            entry["status"] = "skipped: TensorRT not importable"
        else:
            try:
                entry.update(_measure(run, backend, model, precision, baselines))
                entry["status"] = "ok"
            except Exception as exc:  # one combination failing (no kernel, no provider) is a finding
                entry["status"] = f"failed: {type(exc).__name__}: {str(exc)[:500]}"
        print(json.dumps(entry), flush=True)
        results.append(entry)
    return {"batch_size": _batch(run), "results": results}


def end_to_end(run: Run) -> dict[str, Any]:
    from catalogue_tagger.config import Settings
    from catalogue_tagger.inference.base import resolve_backend
    from catalogue_tagger.pipeline import tag
    from catalogue_tagger.sources import open_source
    from catalogue_tagger.store.driver import scratch_database
    from catalogue_tagger.store.embedded import EmbeddedPostgres
    from catalogue_tagger.store.engine import resolve_database_url
    from catalogue_tagger.store.store import Store

    home = Path(tempfile.mkdtemp(prefix="catalogue-tagger-gpu-check-"))  # traversable by the server's user
    home.chmod(0o755)
    settings = Settings(models=E2E_MODELS, device=run.device, batch_size=_batch(run), home=home,
                        engine_cache=run.out / "engines", descriptors=False,
                        workers=1 if run.quick else max(1, (os.cpu_count() or 2) - 1))
    backends = {m: resolve_backend(settings, m) for m in E2E_MODELS}
    if any(backend == "tensorrt" for backend, _ in backends.values()):
        from catalogue_tagger.inference.compile import compile_model

        for model in E2E_MODELS:
            compile_model(model, settings.engine_dir, settings.precision, settings.batch_size, settings.device)
    folder = _corpus_dir(run)
    try:
        server = resolve_database_url(run.database_url, home)
        with scratch_database(server, "gpu_check") as url, Store.connect(url) as store, \
                open_source(str(folder)) as source:
            store.migrate()
            report = tag(source, store, settings)
    finally:
        if run.database_url is None:
            EmbeddedPostgres(home).stop()
        shutil.rmtree(home, ignore_errors=True)
    result: dict[str, Any] = {
        "models": list(E2E_MODELS), "backends": {m: {"backend": b, "reason": r} for m, (b, r) in backends.items()},
        "device": run.device, "precision": settings.precision, "batch_size": settings.batch_size,
        "workers": settings.workers, "descriptors": settings.descriptors, "audio_s": report.audio_s,
        "wall_s": report.wall_s, "xrealtime": report.xrealtime, "tagged": report.tagged, "failed": report.failed,
    }
    ceiling = _part_result(run, "decode")
    if ceiling and ceiling.get("xrealtime"):
        result["vs_decode_ceiling"] = report.xrealtime / ceiling["xrealtime"]
    return result


# --- helpers -------------------------------------------------------------------------------------------------


def _measure(run: Run, backend: str, model: str, precision: str, baselines: dict[tuple[str, str], Any]
             ) -> dict[str, Any]:
    """Segments/s of one combination on a full batch of clip windows, and its max |Δ probs| against fp32."""
    import numpy as np

    from catalogue_tagger.config import Settings
    from catalogue_tagger.inference import open_backend
    from catalogue_tagger.models.specs import get_spec

    spec = get_spec(model)
    batch = _clip_batch(model, _batch(run))
    settings = Settings(backend=backend, device=run.device, precision=precision, batch_size=len(batch),
                        engine_cache=run.out / "engines", workers=0)
    measured: dict[str, Any] = {}
    if backend == "tensorrt":
        from catalogue_tagger.inference.compile import compile_model

        started = time.perf_counter()
        compile_model(model, settings.engine_dir, precision, len(batch), run.device)
        measured["build_s"] = round(time.perf_counter() - started, 1)
    with open_backend(model, settings) as runner:
        probs = runner.run(batch)["probs"]  # warm-up, and the outputs compared
        n, started = 0, time.perf_counter()
        min_s = 0.3 if run.quick else 2.0
        while n < 3 or time.perf_counter() - started < min_s:
            runner.run(batch)
            n += 1
        wall = time.perf_counter() - started
    segments = n * len(batch) / wall
    measured["segments_per_s"] = round(segments, 1)
    measured["xrealtime"] = round(segments * spec.hop / spec.sample_rate, 1)
    if precision == "fp32":
        baselines[backend, model] = probs
    elif (backend, model) in baselines:
        measured["max_abs_diff_vs_fp32"] = float(np.abs(probs - baselines[backend, model]).max())
    return measured


def _cudnn_version() -> int | None:
    import torch

    cudnn: Any = torch.backends.cudnn  # its functions carry no annotations
    return cudnn.version() if cudnn.is_available() else None


def _backends(run: Run) -> list[str]:
    if not run.cuda:
        return ["torch", "onnx"]
    import onnxruntime

    backends = ["torch"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        backends.append("onnx")
    return [*backends, "tensorrt"]


def _batch(run: Run) -> int:
    return 4 if run.quick else BATCH


def _clip_batch(model: str, size: int) -> Any:
    """``size`` windows of the reference clips, cut for ``model`` (repeated when the clips have fewer)."""
    import numpy as np

    from catalogue_tagger.models.specs import get_spec
    from catalogue_tagger.segment import Windowing, segment_track

    spec = get_spec(model)
    windowing = Windowing(spec.window, spec.hop, spec.pad)
    windows = np.concatenate([segment_track(_read_clip(path), windowing)[0] for path in sorted(CLIPS.glob("*.flac"))])
    return np.ascontiguousarray(np.resize(windows, (size, spec.window)))


def _read_clip(path: Path) -> Any:
    import av
    import numpy as np

    with av.open(str(path)) as container:
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])
    return samples.astype(np.float32) / 32768


def _corpus_dir(run: Run) -> Path:
    return run.out / "corpus"


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None


def _part_result(run: Run, name: str) -> dict[str, Any] | None:
    path = run.out / "parts" / f"{name}.json"
    if not path.exists():
        return None
    result: dict[str, Any] | None = json.loads(path.read_text()).get("result")
    return result


# name, function, time box (s) on a GPU machine, time box with --quick
PARTS: list[tuple[str, Callable[[Run], dict[str, Any]], float, float]] = [
    ("environment", environment, 30, 60),
    ("corpus", corpus, 45, 60),
    ("pytest", pytest_gpu, 130, 120),
    ("decode", decode, 40, 90),
    ("inference", inference, 150, 240),
    ("end_to_end", end_to_end, 75, 180),
]


def run_part(name: str, run: Run) -> None:
    """In the child: run one part and write ``OUT/parts/NAME.json``."""
    function = {part[0]: part[1] for part in PARTS}[name]
    started = time.perf_counter()
    try:
        record: dict[str, Any] = {"status": "ok", "result": function(run)}
    except Exception as exc:  # the part's failure is recorded; the parent goes on with the next part
        traceback.print_exc()
        record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    record["seconds"] = round(time.perf_counter() - started, 1)
    (run.out / "parts" / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))


def run_all(run: Run, budget_s: float, argv: list[str]) -> dict[str, Any]:
    """In the parent: every part in its own process, time-boxed; the JSON is rewritten after each."""
    (run.out / "parts").mkdir(parents=True, exist_ok=True)
    log_path, json_path = run.out / "gpu-check.log", run.out / "gpu-check.json"
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": run.device,
                              "quick": run.quick, "budget_s": budget_s, "parts": {}}
    ends = time.time() + budget_s
    with log_path.open("w") as log:
        for name, _, box_gpu, box_quick in PARTS:
            box = min(box_quick if run.quick else box_gpu, ends - time.time())
            (run.out / "parts" / f"{name}.json").unlink(missing_ok=True)
            if box < 5:
                report["parts"][name] = {"status": "skipped: no time left in the budget"}
                continue
            log.write(f"\n===== {name} (time box {box:.0f} s) =====\n")
            log.flush()
            command = [sys.executable, __file__, *argv, "--part", name, "--deadline", str(time.time() + box - 3)]
            child = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                         filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
            started = time.perf_counter()
            try:
                child.wait(timeout=box)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # the part and everything it started
                child.wait()
            record = _part_record(run, name, child.returncode, time.perf_counter() - started)
            report["parts"][name] = record
            log.write(f"===== {name}: {record['status']} in {record.get('seconds')} s\n")
            log.flush()
            json_path.write_text(json.dumps(report, indent=1, default=str))
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["summary"] = _summary(report)
    json_path.write_text(json.dumps(report, indent=1, default=str))
    return report


def _part_record(run: Run, name: str, returncode: int, seconds: float) -> dict[str, Any]:
    path = run.out / "parts" / f"{name}.json"
    if path.exists():
        record: dict[str, Any] = json.loads(path.read_text())
        return record
    status = "timeout" if returncode == -signal.SIGKILL else f"failed: exit code {returncode}, see gpu-check.log"
    return {"status": status, "seconds": round(seconds, 1)}


def _summary(report: dict[str, Any]) -> list[str]:
    parts = report["parts"]
    lines = [f"{name}: {record['status']}" for name, record in parts.items()]
    decode_result = parts.get("decode", {}).get("result") or {}
    e2e = parts.get("end_to_end", {}).get("result") or {}
    if decode_result:
        lines.append(f"decode ceiling: {decode_result['xrealtime']:.0f}x realtime, {decode_result['workers']} workers")
    if e2e:
        ratio = e2e.get("vs_decode_ceiling", float("nan"))
        lines.append(f"tag end to end: {e2e['xrealtime']:.0f}x realtime = {ratio:.2f} of the decode ceiling")
    for entry in (parts.get("inference", {}).get("result") or {}).get("results", []):
        if entry.get("status") == "ok":
            diff = entry.get("max_abs_diff_vs_fp32")
            lines.append(f"{entry['backend']:9} {entry['model']:17} {entry['precision']}: "
                         f"{entry['segments_per_s']:9.1f} segments/s"
                         + (f", max |d| vs fp32 {diff:.1e}" if diff is not None else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda[:N] (default cuda) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny corpus, short measurements (the CPU self-test)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: $OUT, else ./gpu-check)")
    parser.add_argument("--database-url", default=None,
                        help="Postgres server for the end-to-end run (default: the embedded server, in a temp dir)")
    parser.add_argument("--budget-s", type=float, default=450, help="seconds for all parts together (default 450)")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = (args.out or Path(os.environ.get("OUT") or "gpu-check")).resolve()
    run = Run(args.device, args.quick, out, args.database_url, args.deadline)
    if args.part:
        return run_part(args.part, run)
    argv = ["--device", args.device, "--out", str(out)] + (["--quick"] if args.quick else [])
    if args.database_url:
        argv += ["--database-url", args.database_url]
    report = run_all(run, args.budget_s, argv)
    print("\n".join(report["summary"]))
    print(f"results: {out / 'gpu-check.json'}  log: {out / 'gpu-check.log'}")


if __name__ == "__main__":
    main()
