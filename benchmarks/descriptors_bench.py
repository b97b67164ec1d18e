"""Descriptor benchmark: tempo, key and loudness against ground truth and against librosa and Essentia, on the
same files, in one command. Prints a Markdown table and writes JSON.

    .venv/bin/python benchmarks/descriptors_bench.py [--work .cache/descriptors-bench] [--clips 40] [--json out.json]

Ground truth made here:
- MIDI clips (``--clips``, 30 s) at known tempi (60–200 BPM, log-uniform) and keys (24), half with drums, written
  with mido and rendered by FluidSynth with the General MIDI soundfont (Debian ``fluidsynth fluid-soundfont-gm``);
- real music (asc-music, fetched by ``../shared/corpus/fetch-debian-music.sh``): 30 s excerpts time-stretched by
  known factors (the tempo must scale with the factor) and pitch-shifted by known semitones (the key must shift
  by them), both by ffmpeg's ``rubberband`` filter;
- loudness: every file against ffmpeg's own ``ebur128`` summary, and copies normalised to known LUFS (float WAV,
  gain from ffmpeg's measurement).

Anchors on the same files: librosa ``beat.beat_track`` and ``feature.tempo``, a chroma-template key (mean
``chroma_cqt`` against major/minor triad templates), Essentia ``RhythmExtractor2013(multifeature)`` and
``KeyExtractor`` — Essentia (AGPL) runs in its own virtual environment (``.bench-venv``, created on first use by
this script), never in the package's.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from catalogue_tagger.decode import decode_stream
from catalogue_tagger.descriptors import DescriptorAnalyzer, Key

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".bench-venv"
HELPER = Path(__file__).with_name("descriptors_bench_venv.py")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
FETCH_CORPUS = ROOT.parent / "shared/corpus/fetch-debian-music.sh"
STRETCH_FACTORS = (0.85, 1.2)
PITCH_SHIFTS = (-2, 3)
LOUDNESS_TARGETS = (-23.0, -14.0)
MIREX = {"exact": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0}


def sh(*cmd: str | Path) -> str:
    result = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)
    return result.stdout + result.stderr


def ensure_bench_venv() -> Path:
    python = BENCH_VENV / "bin/python"
    if not python.exists():
        sh("python3", "-m", "venv", BENCH_VENV)
        sh(python, "-m", "pip", "install", "-q", "essentia", "mido", "numpy")
    return python


# --- data --------------------------------------------------------------------------------------------------
def make_midi_set(work: Path, clips: int, seconds: float, venv_python: Path, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    folder = work / ("midi" if seed == 0 else f"midi-seed{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    tempos = np.exp(np.linspace(np.log(60), np.log(200), clips))
    rng.shuffle(tempos)
    specs = []
    for i, bpm in enumerate(tempos):
        key = Key(int(rng.integers(12)), bool(rng.integers(2)))
        specs.append({"path": str(folder / f"clip{i:02d}.mid"), "bpm": round(float(bpm), 1), "tonic": key.tonic,
                      "minor": key.minor, "drums": i % 2 == 0, "seconds": seconds, "seed": 1000 * seed + i, "key": key.name})
    todo = [s for s in specs if not Path(s["path"]).exists()]
    if todo:
        spec_file = folder / "specs.json"
        spec_file.write_text(json.dumps(todo))
        sh(venv_python, HELPER, "midi", spec_file)
    for spec in specs:
        wav = Path(spec["path"]).with_suffix(".wav")
        if not wav.exists():
            raw = wav.with_suffix(".raw.wav")
            sh("fluidsynth", "-ni", "-g", "0.5", "-r", "44100", "-F", raw, SOUNDFONT, spec["path"])
            sh("ffmpeg", "-y", "-loglevel", "error", "-i", raw, "-t", str(seconds), wav)
            raw.unlink()
        spec["audio"] = str(wav)
    return specs


def make_real_set(work: Path, seconds: float) -> list[dict[str, Any]]:
    corpus = work / "corpus"
    if not list(corpus.glob("*/*.mp3")) and not list(corpus.glob("*/*.ogg")):
        sh("bash", FETCH_CORPUS, corpus, "--packages", "asc-music")
    sources = sorted(list(corpus.glob("*/*.mp3")) + list(corpus.glob("*/*.ogg")))
    folder = work / "real"
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for source in sources:
        base = folder / f"{source.stem}.wav"
        if not base.exists():
            sh("ffmpeg", "-y", "-loglevel", "error", "-ss", "45", "-t", str(seconds), "-i", source, base)
        items.append({"audio": str(base), "source": source.stem, "kind": "original"})
        for factor in STRETCH_FACTORS:
            out = folder / f"{source.stem}_tempo{factor}.wav"
            if not out.exists():
                sh("ffmpeg", "-y", "-loglevel", "error", "-i", base, "-af", f"rubberband=tempo={factor}", out)
            items.append({"audio": str(out), "source": source.stem, "kind": "stretch", "factor": factor})
        for semitones in PITCH_SHIFTS:
            out = folder / f"{source.stem}_pitch{semitones:+d}.wav"
            if not out.exists():
                ratio = 2 ** (semitones / 12)
                sh("ffmpeg", "-y", "-loglevel", "error", "-i", base, "-af", f"rubberband=pitch={ratio}:pitchq=quality", out)
            items.append({"audio": str(out), "source": source.stem, "kind": "shift", "semitones": semitones})
    return items


def ffmpeg_ebur128(path: str) -> dict[str, float]:
    text = sh("ffmpeg", "-hide_banner", "-nostats", "-i", path, "-af", "ebur128=peak=true", "-f", "null", "-")
    summary = text[text.rindex("Summary:"):]
    number = lambda label: float(re.search(label + r":\s+(-?[\d.]+|-inf)", summary).group(1))  # noqa: E731
    return {"lufs": number("I"), "lra": number("LRA"), "tp": number("Peak")}


def make_normalised_set(work: Path, sources: list[str]) -> list[dict[str, Any]]:
    folder = work / "normalised"
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for source in sources:
        measured = ffmpeg_ebur128(source)["lufs"]
        for target in LOUDNESS_TARGETS:
            out = folder / f"{Path(source).stem}_{int(target)}LUFS.wav"
            if not out.exists():
                gain = target - measured
                sh("ffmpeg", "-y", "-loglevel", "error", "-i", source, "-af", f"volume={gain}dB", "-c:a", "pcm_f32le", out)
            items.append({"audio": str(out), "target_lufs": target})
    return items


# --- estimators --------------------------------------------------------------------------------------------
def ours(path: str) -> dict[str, Any]:
    analyzer = DescriptorAnalyzer(name=path)
    with open(path, "rb") as fh, decode_stream(fh, on_frame=analyzer.push_frame) as audio:
        for chunk in audio:
            analyzer.push(chunk)
    return analyzer.finish().as_dict()


_TRIADS = None


def librosa_estimates(path: str) -> dict[str, Any]:
    import librosa

    global _TRIADS
    y, sr = librosa.load(path, sr=22050, mono=True)
    beat_bpm = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=sr)[0])[0])
    tempo_bpm = float(np.atleast_1d(librosa.feature.tempo(y=y, sr=sr))[0])
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    if _TRIADS is None:
        major = np.zeros(12)
        major[[0, 4, 7]] = 1
        minor = np.zeros(12)
        minor[[0, 3, 7]] = 1
        _TRIADS = [np.roll(major, t) for t in range(12)] + [np.roll(minor, t) for t in range(12)]
    scores = [np.corrcoef(chroma, template)[0, 1] for template in _TRIADS]
    best = int(np.nanargmax(scores))
    key = Key(best % 12, best >= 12)
    return {"beat_track_bpm": beat_bpm, "tempo_bpm": tempo_bpm, "key": key.name}


def essentia_estimates(venv_python: Path, paths: list[str], work: Path) -> subprocess.Popen[str]:
    listing = work / "essentia_files.json"
    listing.write_text(json.dumps(paths))
    return subprocess.Popen([str(venv_python), str(HELPER), "essentia", str(listing)], stdout=subprocess.PIPE, text=True)


# --- metrics -----------------------------------------------------------------------------------------------
def within(estimate: float | None, truth: float, tolerance: float = 0.04) -> bool:
    return estimate is not None and truth > 0 and abs(estimate - truth) <= tolerance * truth


def accuracy2(estimate: float | None, truth: float) -> bool:
    return any(within(estimate, truth * m) for m in (1, 2, 0.5, 3, 1 / 3))


def key_relation(estimate: str | None, truth: str) -> str:
    if estimate is None:
        return "other"
    e, t = Key.parse(estimate), Key.parse(truth)
    if e == t:
        return "exact"
    if e.minor == t.minor and (e.tonic - t.tonic) % 12 in (5, 7):
        return "fifth"
    if e == t.relative:
        return "relative"
    if e == t.parallel:
        return "parallel"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=ROOT / ".cache/descriptors-bench")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1, help="MIDI set (0: the development set the tempo prior was chosen on)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    venv_python = ensure_bench_venv()
    midi = make_midi_set(args.work, args.clips, args.seconds, venv_python, args.seed)
    real = make_real_set(args.work, args.seconds)
    normalised = make_normalised_set(args.work, [m["audio"] for m in midi[:6]] + [r["audio"] for r in real if r["kind"] == "original"])
    files = [m["audio"] for m in midi] + [r["audio"] for r in real]
    essentia_proc = essentia_estimates(venv_python, files, args.work)
    results: dict[str, dict[str, Any]] = {}
    for path in files:
        results[path] = {"ours": ours(path), "librosa": librosa_estimates(path), "ffmpeg": ffmpeg_ebur128(path)}
    for path in (n["audio"] for n in normalised):
        results[path] = {"ours": ours(path), "ffmpeg": ffmpeg_ebur128(path)}
    out, _ = essentia_proc.communicate()
    for line in out.splitlines():
        row = json.loads(line)
        results[row["path"]]["essentia"] = row
    report = summarise(midi, real, normalised, results)
    report["seed"] = args.seed
    report["wall_s"] = round(time.time() - started, 1)
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps({"report": report, "results": results}, indent=1))


def summarise(midi: list[dict[str, Any]], real: list[dict[str, Any]], normalised: list[dict[str, Any]],
              results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    methods = {
        "ours": (lambda r: r["ours"]["tempo_bpm"], lambda r: r["ours"]["key"]),
        "librosa beat_track": (lambda r: r["librosa"]["beat_track_bpm"], lambda r: r["librosa"]["key"]),
        "librosa feature.tempo": (lambda r: r["librosa"]["tempo_bpm"], lambda r: r["librosa"]["key"]),
        "essentia": (lambda r: r["essentia"]["bpm"], lambda r: r["essentia"]["key"]),
    }
    table: dict[str, dict[str, float]] = {}
    for name, (tempo_of, key_of) in methods.items():
        row: dict[str, float] = {}
        for subset, clips in (("all", midi), ("drums", [m for m in midi if m["drums"]]), ("no drums", [m for m in midi if not m["drums"]])):
            estimates = [tempo_of(results[m["audio"]]) for m in clips]
            row[f"acc1 {subset}"] = float(np.mean([within(e, m["bpm"]) for e, m in zip(estimates, clips)]))
            row[f"acc2 {subset}"] = float(np.mean([accuracy2(e, m["bpm"]) for e, m in zip(estimates, clips)]))
        relations = [key_relation(key_of(results[m["audio"]]), m["key"]) for m in midi]
        row["mirex key"] = float(np.mean([MIREX[r] for r in relations]))
        row["key exact"] = float(np.mean([r == "exact" for r in relations]))
        for kind in ("fifth", "relative", "parallel"):
            row[f"key {kind}"] = float(np.mean([r == kind for r in relations]))
        originals = {r["source"]: results[r["audio"]] for r in real if r["kind"] == "original"}
        stretched = [r for r in real if r["kind"] == "stretch"]
        row["tempo scales with stretch"] = float(np.mean([
            within(tempo_of(results[r["audio"]]), (tempo_of(originals[r["source"]]) or 0) * r["factor"]) for r in stretched]))
        row["tempo scales with stretch (any octave)"] = float(np.mean([
            accuracy2(tempo_of(results[r["audio"]]), (tempo_of(originals[r["source"]]) or 0) * r["factor"]) for r in stretched]))
        row["key unchanged by stretch"] = float(np.mean([
            key_of(results[r["audio"]]) is not None and key_of(originals[r["source"]]) is not None
            and Key.parse(key_of(results[r["audio"]])) == Key.parse(key_of(originals[r["source"]])) for r in stretched]))
        shifted = [r for r in real if r["kind"] == "shift"]
        row["key follows shift"] = float(np.mean([
            key_of(originals[r["source"]]) is not None and key_of(results[r["audio"]]) is not None
            and Key.parse(key_of(results[r["audio"]])) == Key.parse(key_of(originals[r["source"]])).transposed(r["semitones"])
            for r in shifted]))
        table[name] = row
    files = [m["audio"] for m in midi] + [r["audio"] for r in real]
    deltas = {
        "lufs": [abs(results[f]["ours"]["loudness_lufs"] - results[f]["ffmpeg"]["lufs"]) for f in files],
        "lra": [abs(results[f]["ours"]["loudness_range_lu"] - results[f]["ffmpeg"]["lra"]) for f in files],
        "tp": [abs(results[f]["ours"]["true_peak_dbtp"] - results[f]["ffmpeg"]["tp"]) for f in files],
    }
    known = [abs(results[n["audio"]]["ours"]["loudness_lufs"] - n["target_lufs"]) for n in normalised]
    loudness = {
        "files": len(files),
        "max |Δ| LUFS vs ffmpeg ebur128": round(max(deltas["lufs"]), 3),
        "max |Δ| LRA vs ffmpeg": round(max(deltas["lra"]), 3),
        "max |Δ| true peak vs ffmpeg (its summary prints 0.1 dB)": round(max(deltas["tp"]), 3),
        "normalised files": len(normalised),
        "max |Δ| LUFS vs known target": round(max(known), 3),
    }
    return {"midi_clips": len(midi), "real_files": len(real), "table": table, "loudness": loudness}


def markdown(report: dict[str, Any]) -> str:
    columns = ["acc1 all", "acc2 all", "acc1 drums", "acc1 no drums", "mirex key", "key exact", "key fifth",
               "key relative", "key parallel", "tempo scales with stretch", "tempo scales with stretch (any octave)",
               "key follows shift", "key unchanged by stretch"]
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in report["table"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    lines.append("")
    lines += [f"- {k}: {v}" for k, v in report["loudness"].items()]
    lines.append(f"- {report['midi_clips']} MIDI clips, {report['real_files']} real-music files, {report.get('wall_s')} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
