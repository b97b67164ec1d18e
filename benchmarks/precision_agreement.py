"""How far a non-fp32 precision moves the tags, on real music: each precision against fp32, track by track.

For every model and precision: max |Δ| of track-mean scores, the median over tracks of the Spearman rank
correlation between the two tag vectors of a track, and the share of tracks whose top-3 tags (as a set)
change. The tracks are decoded once per precision through the library's own ``predict_files`` (descriptors
off), each model on the backend ``auto`` picks for that precision. int8 graphs are compiled first, calibrated
on ``--calibration`` (music kept apart from CORPUS_DIR). ``--speed`` adds inference-only segments/s of each
precision on the same real windows, measured in alternating rounds.

    python benchmarks/precision_agreement.py CORPUS_DIR [--precision bf16] [--models musicnn-mtt,samplecnn-mtt] \
        [--calibration OTHER_MUSIC_DIR] [--speed] [--json benchmarks/results/precision-agreement.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from catalogue_tagger.config import Settings, split_names
from catalogue_tagger.inference import open_backend
from catalogue_tagger.inference.base import resolve_backend
from catalogue_tagger.inference.compile import compile_int8
from catalogue_tagger.inference.quantize import calibration_windows
from catalogue_tagger.predict import predict_files
from catalogue_tagger.records import TrackResult

AUDIO = {".mp3", ".ogg", ".flac", ".m4a", ".opus", ".wav"}


def track_means(files: list[Path], settings: Settings) -> dict[str, dict[str, np.ndarray]]:
    """model -> file name -> mean tag scores over the track's segments."""
    means: dict[str, dict[str, np.ndarray]] = {m: {} for m in settings.models}
    for prediction in predict_files(files, settings):
        if not isinstance(prediction.outcome, TrackResult):
            continue
        for model, output in zip(settings.models, prediction.outcome.outputs):
            means[model][Path(prediction.path).name] = np.asarray(output.mean, dtype=np.float64)
    return means


def agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, float]:
    names = sorted(reference.keys() & other.keys())
    deltas = [float(np.max(np.abs(reference[n] - other[n]))) for n in names]
    rhos = [float(spearmanr(reference[n], other[n]).statistic) for n in names]
    top3 = [set(np.argsort(-reference[n])[:3]) != set(np.argsort(-other[n])[:3]) for n in names]
    return {"tracks": len(names), "max_abs_delta_track_mean": max(deltas), "median_spearman": float(np.median(rhos)),
            "min_spearman": min(rhos), "top3_changed_share": float(np.mean(top3))}


def speed(files: list[Path], settings: Settings, precisions: list[str], rounds: int = 3, windows: int = 64
          ) -> dict[str, dict[str, float]]:
    """model -> precision -> best segments/s over ``rounds`` alternating rounds, one batch of real windows each."""
    result: dict[str, dict[str, float]] = {}
    for model in settings.models:
        batch = calibration_windows(model, files[:: max(1, len(files) // 16)], per_track=8)[:windows]
        backends = {p: open_backend(model, dataclasses.replace(settings, precision=p)) for p in precisions}
        best = {p: 0.0 for p in precisions}
        for backend in backends.values():
            backend.run(batch[:8])  # warm up
        for _ in range(rounds):
            for precision, backend in backends.items():
                started = time.perf_counter()
                backend.run(batch)
                best[precision] = max(best[precision], len(batch) / (time.perf_counter() - started))
        for backend in backends.values():
            backend.close()
        result[model] = {p: round(v, 1) for p, v in best.items()}
        print(f"{model}: segments/s {result[model]}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="folder searched recursively for audio files")
    parser.add_argument("--precision", action="append", default=None, help="precision to compare (repeatable)")
    parser.add_argument("--models", default="musicnn-mtt,samplecnn-mtt")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--calibration", type=Path, default=None, help="music to calibrate int8 on")
    parser.add_argument("--speed", action="store_true", help="also inference-only segments/s per precision")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in AUDIO)
    seen: dict[str, Path] = {}
    for path in files:  # one copy of each track when a corpus holds transcodes of the same music
        seen.setdefault(path.stem, path)
    files = sorted(seen.values())
    base = Settings(models=split_names(args.models), descriptors=False, workers=0)
    precisions = ["fp32", *(args.precision or ["bf16"])]
    if "int8" in precisions:
        if args.calibration is None:
            parser.error("int8 needs --calibration DIR (music apart from the corpus)")
        for model in base.models:
            print(f"int8 graph of {model}: {compile_int8(model, base.engine_dir, args.calibration)}", flush=True)
    runs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    backends: dict[str, dict[str, str]] = {}  # precision -> model -> backend that ran it
    for precision in precisions:
        settings = dataclasses.replace(base, precision=precision)
        started = time.perf_counter()
        runs[precision] = track_means(files, settings)
        backends[precision] = {m: resolve_backend(settings, m)[0] for m in settings.models}
        print(f"{precision}: {len(files)} tracks in {time.perf_counter() - started:.0f} s on {backends[precision]}",
              flush=True)
    result = {
        "corpus": str(args.corpus), "tracks": [f.name for f in files],
        "against_fp32": {
            precision: {m: {"backend": backends[precision][m], **agreement(runs["fp32"][m], runs[precision][m])}
                        for m in base.models}
            for precision in runs if precision != "fp32"
        },
    }
    if args.calibration is not None:
        result["calibration"] = str(args.calibration)
    if args.speed:
        result["segments_per_s"] = speed(files, base, precisions)
    print(json.dumps(result["against_fp32"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
