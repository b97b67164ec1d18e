"""The one-call GPU check runs end to end on the CPU (``--device cpu --quick``): every part, its JSON and log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PARTS = ["environment", "corpus", "pytest", "decode", "inference", "end_to_end"]


def test_gpu_check_runs_every_part_on_the_cpu(tmp_path: Path, server_url: str) -> None:
    command = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path),
               "--database-url", server_url]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert {name: part["status"] for name, part in report["parts"].items()} == dict.fromkeys(PARTS, "ok")
    log = (tmp_path / "gpu-check.log").read_text()
    assert all(f"===== {name}: ok" in log for name in PARTS)
    parts = {name: part["result"] for name, part in report["parts"].items()}

    assert parts["environment"]["torch"] and "CPUExecutionProvider" in parts["environment"]["onnxruntime_providers"]
    assert parts["pytest"]["counts"]["failure"] == parts["pytest"]["counts"]["error"] == 0
    assert parts["decode"]["files"] == parts["corpus"]["files"] and parts["decode"]["xrealtime"] > 0

    measured = {(r["backend"], r["model"], r["precision"]): r for r in parts["inference"]["results"]}
    for model in ("musicnn-mtt", "samplecnn-mtt"):
        assert measured["torch", model, "fp32"]["status"] == measured["onnx", model, "fp32"]["status"] == "ok"
        fp16 = measured["onnx", model, "fp16"]
        assert fp16["status"] == "ok" and fp16["max_abs_diff_vs_fp32"] <= 2e-3 and fp16["segments_per_s"] > 0
        assert measured["onnx", model, "bf16"]["status"].startswith(("ok", "failed: BackendUnavailable"))

    e2e = parts["end_to_end"]
    assert e2e["tagged"] == parts["corpus"]["files"] and not e2e["failed"]
    assert e2e["models"] == ["musicnn-mtt", "samplecnn-mtt"] and e2e["vs_decode_ceiling"] > 0
    assert any(line.startswith("tag end to end") for line in report["summary"])
