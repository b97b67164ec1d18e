"""Decode benchmark: peak RSS of streamed decode (short vs long track), speed (× realtime on one core),
streamed vs one-shot soxr agreement, and what libavfilter's ``ebur128`` meter costs ffmpeg itself on the same
files (the floor of measuring loudness as BS.1770 asks: on the source channels, at the source rate).
Synthesizes its inputs with PyAV into a temporary folder; prints JSON.

Every figure is taken with the descriptors (tempo, key, loudness: ``catalogue_tagger.descriptors``) off and on,
side by side in the same run; speed is the best of ``--repeats`` alternating runs of each.

    .venv/bin/python benchmarks/decode_bench.py [--long-min 60] [--short-min 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import soxr

from catalogue_tagger.decode import SAMPLE_RATE, decode_stream

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/musicnn/pub_orchestral_1.flac"


def music_44k_stereo(seconds: float) -> np.ndarray:
    """float32 (2, n) at 44.1 kHz: the reference excerpt upsampled and looped (real music, not a sine)."""
    with av.open(str(REFERENCE)) as container:
        mono16 = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)]).astype(np.float32) / 32768
    up = soxr.resample(mono16, 16000, 44100, quality="HQ").astype(np.float32)
    n = int(seconds * 44100)
    looped = np.resize(up, n)
    return np.stack([looped, looped * 0.5])


def encode(path: Path, samples: np.ndarray, codec: str, rate: int = 44100, **options: str) -> Path:
    with av.open(str(path), "w", options={"write_xing": "0"} if codec == "libmp3lame" else None) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="stereo")
        if options:
            stream.codec_context.options = options
        stream.codec_context.format = "fltp"  # both encoders used here accept float planar
        fmt = "fltp"
        size = stream.codec_context.frame_size or 1024
        for start in range(0, samples.shape[1], size):
            block = samples[:, start : start + size]
            data = block if fmt.endswith("p") else block.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc (Linux), in MiB; 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak_rss() -> None:
    """Reset VmHWM so the peak covers decoding only, not the imports (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def child_decode(path: str, descriptors: str) -> None:
    """Run in a fresh process: stream-decode ``path`` (measuring descriptors too when asked) and print peak RSS
    before/after and timing."""
    analyzer = None
    if descriptors != "off":  # imported only then: the "off" figures are those of a worker without descriptors
        from catalogue_tagger.descriptors import DescriptorAnalyzer

        analyzer = DescriptorAnalyzer(name=path)
    if analyzer is not None:  # warm up librosa's lazy imports and numba outside the measurement
        analyzer.push(np.zeros(SAMPLE_RATE * 13, np.float32))
        analyzer = DescriptorAnalyzer(name=path)
    _reset_peak_rss()
    base = _status_mib("VmRSS")
    start = time.process_time()
    on_frame = analyzer.push_frame if analyzer is not None and descriptors == "all" else None  # loudness
    with open(path, "rb") as fh, decode_stream(fh, on_frame=on_frame) as audio:
        for chunk in audio:
            if analyzer is not None:
                analyzer.push(chunk)
    if analyzer is not None:
        analyzer.finish()
    cpu = time.process_time() - start
    peak = _status_mib("VmHWM") if base else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_before_mib": base, "peak_rss_mib": peak, "cpu_s": cpu,
                      "duration_s": audio.info.duration_s}))


def run_child(path: Path, descriptors: str = "off") -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(path), "--descriptors", descriptors]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]  # one core
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(result.stdout)


#: What ffmpeg itself pays for the same meter: its own decode to nothing, then with libavfilter's ``ebur128``
#: (loudness only, and with its true peak), on the same file, one thread, one core.
FFMPEG_FILTERS = {"decode_only": "anull", "ebur128": "ebur128=peak=none", "ebur128_true_peak": "ebur128=peak=true"}


def ffmpeg_cpu_s(path: Path, audio_filter: str) -> float:
    """CPU seconds (user + system) of ``ffmpeg -i path -af audio_filter -f null -`` on one core."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1", "-i", str(path),
           "-af", audio_filter, "-f", "null", "-"]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ffmpeg_floor(path: Path, repeats: int) -> dict[str, float]:
    """The meter's cost in ffmpeg itself: best of ``repeats`` alternating runs of each filter."""
    runs: dict[str, list[float]] = {name: [] for name in FFMPEG_FILTERS}
    for _ in range(repeats):
        for name, audio_filter in FFMPEG_FILTERS.items():
            runs[name].append(ffmpeg_cpu_s(path, audio_filter))
    best = {name: min(cpu) for name, cpu in runs.items()}
    return {
        **{f"cpu_s_{name}": round(cpu, 3) for name, cpu in best.items()},
        "slowdown_pct_ebur128": round(100 * (best["ebur128"] / best["decode_only"] - 1), 1),
        "slowdown_pct_ebur128_true_peak": round(100 * (best["ebur128_true_peak"] / best["decode_only"] - 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--long-min", type=float, default=60)
    parser.add_argument("--short-min", type=float, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--descriptors", choices=("off", "tempo_key", "all"), default="off", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_decode(args.child, args.descriptors)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Long MP3 built from a short one: MP3 is a sequence of frames, so concatenating files is valid.
        short = encode(folder / "short.mp3", music_44k_stereo(args.short_min * 60), "libmp3lame")
        repeats = max(1, round(args.long_min / args.short_min))
        long = folder / "long.mp3"
        long.write_bytes(short.read_bytes() * repeats)
        report["rss_mp3"] = {"short": run_child(short), "long": run_child(long)}
        report["rss_mp3_descriptors_on"] = {"short": run_child(short, "all"), "long": run_child(long, "all")}
        ogg = encode(folder / "one_min.ogg", music_44k_stereo(60), "vorbis", strict="experimental")
        for name, path in (("ogg_44k_stereo_one_core", ogg), ("mp3_44k_stereo_one_core", short)):
            runs: dict[str, list[dict[str, float]]] = {"off": [], "tempo_key": [], "all": []}
            for _ in range(args.repeats):
                for mode in runs:
                    runs[mode].append(run_child(path, mode))
            x = {mode: max(r["duration_s"] / r["cpu_s"] for r in rs) for mode, rs in runs.items()}
            report[name] = {
                "x_realtime": x["off"],
                "x_realtime_tempo_key": x["tempo_key"],
                "x_realtime_all_descriptors": x["all"],
                "slowdown_pct_tempo_key": round(100 * (x["off"] / x["tempo_key"] - 1), 1),
                "slowdown_pct_all_descriptors": round(100 * (x["off"] / x["all"] - 1), 1),
                "ffmpeg_cli": ffmpeg_floor(path, args.repeats),
            }
        with av.open(str(ogg)) as c:
            raw = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1).astype(np.float32)
        one_shot = soxr.resample(raw.mean(axis=0), 44100, SAMPLE_RATE, quality="HQ")
        for chunk_s in (0.25, 10.0):
            with ogg.open("rb") as fh, decode_stream(fh, chunk_s=chunk_s) as audio:
                streamed = np.concatenate(list(audio))
            report[f"max_abs_diff_streamed_vs_one_shot_chunk_{chunk_s}s"] = float(np.abs(streamed - one_shot).max())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
