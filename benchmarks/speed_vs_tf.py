"""End-to-end speed of ``catalogue-tagger tag --models musicnn-mtt`` against the original musicnn in TensorFlow
(``tf_original.py``), on the same tracks, each as a whole process timed from outside; prints a table, writes JSON.

    .venv/bin/python benchmarks/speed_vs_tf.py FOLDER --tf-python /work/tfvenv/bin/python [--rounds 3]
        [--batch 64] [--ours="--backend torch" --ours="--backend onnx" ...] [--json OUT]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [-- EXTRA TAG ARGS]

Each round runs, in this order, the TensorFlow original (graph loaded once, batches of ``--batch``) and then every
``--ours`` configuration (none given: the defaults), each ``catalogue-tagger tag FOLDER --models musicnn-mtt
CONFIG EXTRA`` into a fresh database created (and dropped afterwards) on the server of ``--database-url``. Its
start-up, schema migration, decoding, inference and writes are all inside the timed process. All rounds share one
temporary ``CATALOGUE_TAGGER_HOME`` (``--home`` to choose it), so artifacts a backend caches there are built in the
first round only. Write an ``--ours`` value with ``=`` (``--ours=--workers=1``) so it is not taken for an option.

Reported: wall seconds and × realtime (over the audio seconds that the TF run decoded) of every run, the ratio
ours/TF (TF wall / our wall: > 1 means ours is faster) per round and its median per configuration, and, as a check
that both computed the same thing, the largest |Δ| between the two per-track mean scores over all tracks and tags.

The file list of the measured corpus (7 tracks, 40 min, MP3 and Ogg) is in
``benchmarks/results/speed-vs-tf-corpus.txt``. Not collected by pytest; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from catalogue_tagger.store.driver import scratch_database
from catalogue_tagger.store.store import Store

MODEL = "musicnn-mtt"
TF_SCRIPT = Path(__file__).with_name("tf_original.py")
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


class RunFailed(RuntimeError):
    """A benchmarked process exited non-zero; the message ends with the tail of its output."""


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``cmd`` to completion: ``(wall seconds, stdout)``; stderr goes to ``log``."""
    with log.open("w") as err:
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, check=False)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RunFailed(f"{shlex.join(cmd)} exited {done.returncode}:\n{tail}")
    return wall, done.stdout


VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*=")


def ours_command() -> list[str]:
    """The console script beside this interpreter, else the package run as a module (the same entry point)."""
    script = Path(sys.executable).with_name("catalogue-tagger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "catalogue_tagger"]


def run_tf(tf_python: str, folder: Path, batch: int, work: Path, round_no: int) -> dict[str, Any]:
    out = work / f"tf-{round_no}.json"
    wall, _ = timed([tf_python, str(TF_SCRIPT), str(folder), "--batch", str(batch), "--json", str(out)],
                    work / f"tf-{round_no}.log")
    report: dict[str, Any] = json.loads(out.read_text())
    report["wall_process_s"] = round(wall, 3)
    return report


def run_ours(args: list[str], folder: Path, server_url: str, home: Path, log: Path,
             paths: list[str]) -> tuple[float, dict[str, Any], dict[str, dict[str, float]]]:
    """One ``tag`` run into a scratch database: ``(wall s, its --json summary, {path: {tag: mean score}})``."""
    variables = dict(a.split("=", 1) for a in args if VARIABLE.match(a))  # leading NAME=value: environment
    args = [a for a in args if not VARIABLE.match(a)]
    with scratch_database(server_url, "ct_speed_vs_tf") as url:
        env = {**os.environ, **variables, "CATALOGUE_TAGGER_DATABASE_URL": url, "CATALOGUE_TAGGER_HOME": str(home)}
        cmd = [*ours_command(), "tag", str(folder), "--models", MODEL, "--json", *args]
        wall, stdout = timed(cmd, log, env)
        summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        with Store.connect(url) as store:
            scores = {path: {row["tag"]: float(row["score"])
                             for row in store.tags_for_track(Path(path).as_uri(), model=MODEL)}
                      for path in paths}
    return wall, summary, scores


def max_delta(tf_tracks: list[dict[str, Any]], ours: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Largest |Δ| of per-track mean scores over tracks and tags, where it is, and tracks only one side scored."""
    worst: dict[str, Any] = {"max_abs": 0.0, "track": None, "tag": None, "unmatched": []}
    for track in tf_tracks:
        reference, mine = track["track_mean"], ours.get(track["path"], {})
        if not reference or not mine:
            if reference or mine:
                worst["unmatched"].append(track["name"])
            continue
        for tag, score in reference.items():
            if tag not in mine:
                worst["unmatched"].append(f"{track['name']}:{tag}")
            elif abs(mine[tag] - score) > worst["max_abs"]:
                worst.update(max_abs=abs(mine[tag] - score), track=track["name"], tag=tag)
    worst["max_abs"] = round(worst["max_abs"], 7)
    return worst


def commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or None


def warm_page_cache(folder: Path) -> None:
    """Read every file once, so the first timed run does not pay the disk alone."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(1 << 20):
                    pass


def benchmark(folder: Path, tf_python: str, configs: list[list[str]], rounds: int, batch: int, server_url: str,
              home: Path, work: Path) -> dict[str, Any]:
    warm_page_cache(folder)
    runs: list[dict[str, Any]] = []
    for round_no in range(1, rounds + 1):
        tf = run_tf(tf_python, folder, batch, work, round_no)
        audio_s, tf_wall = tf["audio_s"], tf["wall_process_s"]
        paths = [t["path"] for t in tf["tracks"]]
        entry: dict[str, Any] = {"round": round_no, "tf": {
            "wall_s": tf_wall, "xrealtime": round(audio_s / tf_wall, 2),
            "inner": {k: tf[k] for k in ("wall_total_s", "wall_after_load_s", "load_s", "frontend_s", "network_s",
                                         "xrealtime_total", "xrealtime_after_load")}}, "ours": []}
        print(f"round {round_no}: TF {tf_wall:7.2f} s {audio_s / tf_wall:6.1f}x", flush=True)
        for index, config in enumerate(configs):
            log = work / f"ours{index + 1}-{round_no}.log"
            wall, summary, scores = run_ours(config, folder, server_url, home, log, paths)
            delta = max_delta(tf["tracks"], scores)
            if abs(summary["audio_s"] - audio_s) > 0.01 * audio_s:
                print(f"  warning: ours decoded {summary['audio_s']} s, TF {audio_s} s", file=sys.stderr)
            entry["ours"].append({"args": shlex.join(config), "wall_s": round(wall, 3),
                                  "xrealtime": round(audio_s / wall, 2), "speed_ratio": round(tf_wall / wall, 3),
                                  "summary": summary, "track_mean_delta": delta})
            print(f"  ours[{shlex.join(config) or 'defaults'}] {wall:7.2f} s {audio_s / wall:6.1f}x  "
                  f"ours/TF {tf_wall / wall:5.2f}  max |Δ track mean| {delta['max_abs']:.2e}", flush=True)
        runs.append(entry)
    summary_rows = [{"args": shlex.join(config),
                     "median_speed_ratio": statistics.median(r["ours"][i]["speed_ratio"] for r in runs),
                     "median_xrealtime": statistics.median(r["ours"][i]["xrealtime"] for r in runs),
                     "max_abs_track_mean_delta": max(r["ours"][i]["track_mean_delta"]["max_abs"] for r in runs)}
                    for i, config in enumerate(configs)]
    return {
        "benchmark": "speed_vs_tf", "folder": str(folder), "model": MODEL, "n_tracks": len(tf["tracks"]),
        "audio_s": tf["audio_s"], "tracks": [{"name": t["name"], "duration_s": t["duration_s"]} for t in tf["tracks"]],
        "device": "cpu", "cpu_count": os.cpu_count(), "platform": platform.platform(), "commit": commit(),
        "tf": {"batch": batch, "versions": tf["versions"],
               "median_xrealtime": statistics.median(r["tf"]["xrealtime"] for r in runs)},
        "configs": summary_rows, "rounds": runs,
    }


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the tracks (a folder `tag` can use as its source)")
    parser.add_argument("--tf-python", required=True, help="python of the TensorFlow venv (see tf_original.py)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="TF patches per session run (default 64)")
    parser.add_argument("--ours", action="append", default=None, metavar="ARGS",
                        help="one configuration of ours: `tag` arguments in one string, NAME=value words set "
                        "environment variables (CATALOGUE_TAGGER_INFERENCE_THREADS=2); repeatable")
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help="server the scratch databases are made on")
    parser.add_argument("--home", type=Path, help="CATALOGUE_TAGGER_HOME of our runs (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    configs = [shlex.split(c) + extra for c in (args.ours or [""])]
    folder = args.folder.resolve()
    with tempfile.TemporaryDirectory(prefix="speed-vs-tf-") as tmp:
        home = args.home or Path(tmp) / "home"
        try:
            report = benchmark(folder, args.tf_python, configs, args.rounds, args.batch, args.database_url, home,
                               Path(tmp))
        except RunFailed as exc:
            sys.exit(f"speed_vs_tf: {exc}")
    print(f"TF median {report['tf']['median_xrealtime']:.1f}x realtime over {report['audio_s']:.0f} s of audio")
    for row in report["configs"]:
        print(f"ours[{row['args'] or 'defaults'}]: median {row['median_xrealtime']:.1f}x realtime, "
              f"median ours/TF {row['median_speed_ratio']:.2f}, "
              f"max |Δ track mean| {row['max_abs_track_mean_delta']:.2e}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
