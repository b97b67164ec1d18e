"""What a second of audio costs each tagger: floating-point operations (counted by torch's FlopCounterMode on one
segment) and wall time on the CPU (inference only, random full batches, through the library's backends, with
their default threads).

A segment covers ``spec.hop`` new samples (musicnn: 47872 = 2.99 s; SampleCNN: 59049 = 3.69 s), so
cost per second of audio = cost per segment / (hop / 16000).

    python benchmarks/cost_per_second.py [--models musicnn-mtt,samplecnn-mtt] [--backends torch,onnx] \
        [--batch 64] [--batches 6] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from catalogue_tagger.config import Settings
from catalogue_tagger.inference.base import open_backend
from catalogue_tagger.models import musicnn
from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.specs import get_spec


def flops_per_segment(model: str) -> int:
    """Counted as the exported graph computes it: musicnn's front end as its plain layers (``conv2d`` then the
    max over mel; the CPU's tiled front end computes the same products through in-place GEMMs that the counter does
    not see) and the log-mel spectrum as its DFT GEMM (the CPU's ``rfft`` is not counted either)."""
    tagger = load_model(model)
    counter = FlopCounterMode(display=False)
    plain = lambda x, weight, bias: F.conv2d(x, weight, bias).amax(dim=3)  # noqa: E731
    with counter, torch.inference_mode(), mock.patch.object(musicnn, "conv_max_over_mel", plain), \
            mock.patch.object(torch.onnx, "is_in_onnx_export", lambda: True):
        tagger(torch.zeros(1, tagger.spec.window))
    return int(counter.get_total_flops())


def seconds_per_segment(model: str, backend: str, batch: int, batches: int, engine_dir: Path) -> float:
    """Median wall time of one batch over ``batches`` runs after one warm-up, divided by the batch size."""
    settings = Settings(backend=backend, engine_cache=engine_dir)
    with open_backend(model, settings) as runner:
        waves = (0.1 * np.random.default_rng(0).standard_normal((batch, runner.spec.window))).astype(np.float32)
        runner.run(waves)
        times = []
        for _ in range(batches):
            started = time.perf_counter()
            runner.run(waves)
            times.append(time.perf_counter() - started)
    return float(np.median(times)) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="musicnn-mtt,samplecnn-mtt")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                              "torch": torch.__version__, "batch": args.batch, "models": {}}
    with tempfile.TemporaryDirectory() as engine_dir:
        for model in args.models.split(","):
            spec = get_spec(model)
            audio_s = spec.hop / spec.sample_rate
            flops = flops_per_segment(model)
            record: dict[str, Any] = {"weights_sha256": spec.weights_sha256, "segment_audio_s": round(audio_s, 3),
                                      "gflop_per_audio_s": round(flops / audio_s / 1e9, 3)}
            for backend in args.backends.split(","):
                per_segment = seconds_per_segment(model, backend, args.batch, args.batches, Path(engine_dir))
                record[backend] = {"segments_per_s": round(1 / per_segment, 1),
                                   "wall_ms_per_audio_s": round(1000 * per_segment / audio_s, 2),
                                   "x_realtime": round(audio_s / per_segment, 1)}
            result["models"][model] = record
            print(json.dumps({model: record}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
