"""The original musicnn (0.1.0, TensorFlow) on real tracks: the baseline that ``musicnn-mtt``'s speed is compared
with (``speed_vs_tf.py``), and a check that the baseline is the original (``--check-reference``).

Runs in a TensorFlow virtual environment of its own, outside the repository, never in the package's:

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow_cpu==2.21.0 tf_keras==2.21.0 numpy==1.26.4 librosa==0.11.0
    /work/tfvenv/bin/pip install musicnn==0.1.0 --no-deps      # its checkpoints and models.py, not its old pins

    /work/tfvenv/bin/python benchmarks/tf_original.py FOLDER_OR_FILES... [--batch 64] [--json OUT]
    /work/tfvenv/bin/python benchmarks/tf_original.py --check-reference DIR [--batch 64]

What runs is musicnn 0.1.0's ``extractor``, with the graph built and restored once for all tracks:

- front end as ``musicnn.extractor.batch_data``: ``librosa.load(path, sr=16000)`` (mono),
  ``librosa.feature.melspectrogram`` (n_fft 512, hop 256, 96 mels), cast to float16, ``log10(10000 x + 1)``;
  non-overlapping patches of 187 frames (``time_to_frames(3 s) + 1``), a last partial patch dropped. Two spellings
  differ from the 2019 source and keep its arithmetic: ``pad_mode="reflect"`` is passed explicitly (librosa 0.7's
  default, with which musicnn was released and trained; librosa >= 0.9 pads with zeros, which moves track means by
  up to 3.5e-3), and the log is taken of the float16 values cast to float32 (what numpy 1.x's promotion does; numpy
  2 keeps float16 and overflows). The extractor's patch-by-patch ``np.concatenate`` (quadratic in track length) is
  one slice here: the same patches, a little faster, so the baseline is not handicapped;
- network: ``musicnn/models.py``'s ``define_model`` under ``tf.compat.v1`` (its ``tf.compat.v1.layers`` need Keras 2:
  ``TF_USE_LEGACY_KERAS=1`` with tf_keras), in the ``model`` name scope, restored with ``tf.compat.v1.train.Saver``
  from the package's ``MTT_musicnn`` checkpoint, ``is_training=False``; sigmoid of the logits is the taggram;
- patches of all tracks go through in batches of ``--batch`` (the extractor feeds 1 at a time: batch 64 moves
  logits by at most 6.7e-6); a track's score per tag is the mean of its patch sigmoids. A track under 187 frames has
  no patch (the extractor crashes there): it is reported with ``track_mean: null``.

Timing: ``total`` runs from this module's first statement (interpreter start-up excluded) to the end, imports and
graph load included; ``after load`` starts once the checkpoint is restored. ``speed_vs_tf.py`` times the whole
process from outside.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402 - everything below is part of the timed start-up
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from types import TracebackType  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers in TF 2.16+ is Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the baseline is the CPU one, even where TensorFlow sees a GPU
warnings.filterwarnings("ignore", message=r"`tf\.layers\.")  # models.py's deprecated-layer notices

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import tensorflow as tf  # noqa: E402
from musicnn import configuration as musicnn_config  # noqa: E402
from musicnn import models as musicnn_models  # noqa: E402

AUDIO_SUFFIXES = (".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a", ".aac")
MODEL = "MTT_musicnn"
PATCH_FRAMES = int(librosa.time_to_frames(3, sr=musicnn_config.SR, n_fft=musicnn_config.FFT_SIZE,
                                          hop_length=musicnn_config.FFT_HOP)) + 1  # 187, as the extractor computes


def log_mel(path: Path) -> tuple[npt.NDArray[np.float32], float]:
    """musicnn's front end on one file: ``(log-mel (n_frames, 96) float32, decoded seconds)``."""
    audio, sr = librosa.load(path, sr=musicnn_config.SR)
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=musicnn_config.FFT_HOP,
                                         n_fft=musicnn_config.FFT_SIZE, n_mels=musicnn_config.N_MELS,
                                         pad_mode="reflect").T
    mel16 = mel.astype(np.float16)
    return np.log10(10000 * mel16.astype(np.float32) + 1), len(audio) / sr


def patches(mel: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The extractor's patches: ``(n, 187, 96)``, starting every 187 frames, a last partial one dropped."""
    n = mel.shape[0] // PATCH_FRAMES
    return np.ascontiguousarray(mel[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, mel.shape[1]))


class OriginalMusicnn:
    """musicnn's graph for ``model``, built and restored once; ``run`` feeds patches in batches."""

    def __init__(self, model: str = MODEL, threads: int = 0) -> None:
        labels = musicnn_config.MTT_LABELS if "MTT" in model else musicnn_config.MSD_LABELS
        self.labels: list[str] = list(labels)
        tf.compat.v1.disable_eager_execution()  # what importing musicnn.extractor does
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            self._x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, musicnn_config.N_MELS])
            self._is_training = tf.compat.v1.placeholder(tf.bool)
            outputs = musicnn_models.define_model(self._x, self._is_training, model, len(self.labels))
            self._logits = outputs[0]
            self._sigmoid = tf.nn.sigmoid(self._logits)
        session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                                  inter_op_parallelism_threads=threads)
        self._session = tf.compat.v1.Session(config=session_config)
        self._session.run(tf.compat.v1.global_variables_initializer())
        checkpoint = Path(musicnn_models.__file__).parent / model
        tf.compat.v1.train.Saver().restore(self._session, f"{checkpoint}/")

    def run(self, batch: npt.NDArray[np.float32], batch_size: int) -> tuple[npt.NDArray[np.float32],
                                                                             npt.NDArray[np.float32]]:
        """``(logits, sigmoid)``, each ``(n, 50)``, of patches ``(n, 187, 96)``."""
        logits, sigmoid = [], []
        for start in range(0, len(batch), batch_size):
            out = self._session.run([self._logits, self._sigmoid],
                                    feed_dict={self._x: batch[start : start + batch_size], self._is_training: False})
            logits.append(out[0])
            sigmoid.append(out[1])
        if not logits:
            empty: npt.NDArray[np.float32] = np.zeros((0, len(self.labels)), np.float32)
            return empty, empty
        return np.concatenate(logits), np.concatenate(sigmoid)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OriginalMusicnn:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class Track:
    path: Path
    duration_s: float
    patches: npt.NDArray[np.float32]  # (n, 187, 96)


def audio_files(inputs: list[str]) -> list[Path]:
    """The files named, and the audio files under the folders named (recursively, sorted); absolute paths."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():  # named as the folder source names them: under the resolved folder, links kept
            files += sorted(p for p in item.resolve().rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        elif item.is_file():
            files.append(item.absolute())
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files


def versions() -> dict[str, str]:
    packages = ("tensorflow", "tf_keras", "numpy", "librosa", "soundfile", "soxr", "musicnn")
    return {"python": platform.python_version(), **{name: version(name) for name in packages}}


def benchmark(files: list[Path], batch_size: int, threads: int) -> dict[str, Any]:
    """Load the graph, decode every file, run all patches; timings and per-track mean scores."""
    with OriginalMusicnn(MODEL, threads) as net:
        t_loaded = time.perf_counter()
        tracks = []
        for path in files:
            mel, seconds = log_mel(path)
            tracks.append(Track(path, seconds, patches(mel)))
        t_frontend = time.perf_counter()
        _, sigmoid = net.run(np.concatenate([t.patches for t in tracks]), batch_size)
        t_end = time.perf_counter()
        labels = net.labels
    results, start = [], 0
    for track in tracks:
        n = len(track.patches)
        mean = sigmoid[start : start + n].mean(axis=0) if n else None
        start += n
        results.append({"path": str(track.path), "name": track.path.name, "duration_s": round(track.duration_s, 3),
                        "n_patches": n,
                        "track_mean": None if mean is None else dict(zip(labels, map(float, mean), strict=True))})
    audio_s = sum(t.duration_s for t in tracks)
    total, after_load = t_end - _T0, t_end - t_loaded
    return {
        "implementation": "musicnn 0.1.0 (TensorFlow, tf.compat.v1 graph)", "model": MODEL, "batch": batch_size,
        "threads": threads or "default", "cpu_count": os.cpu_count(), "versions": versions(),
        "n_tracks": len(tracks), "n_patches": int(sum(len(t.patches) for t in tracks)), "audio_s": round(audio_s, 3),
        "wall_total_s": round(total, 3), "wall_after_load_s": round(after_load, 3),
        "load_s": round(t_loaded - _T0, 3), "frontend_s": round(t_frontend - t_loaded, 3),
        "network_s": round(t_end - t_frontend, 3),
        "xrealtime_total": round(audio_s / total, 2), "xrealtime_after_load": round(audio_s / after_load, 2),
        "labels": labels, "tracks": results,
    }


def check_reference(folder: Path, batch_size: int, threads: int, tolerance: float) -> dict[str, Any]:
    """Run every ``<clip>.flac`` of ``folder`` and compare with ``<clip>.npz``'s stored TF outputs."""
    prefix = f"{MODEL}/"
    worst = {"mel": 0.0, "logits": 0.0, "patch_sigmoid": 0.0, "track_mean": 0.0}
    clips = []
    with OriginalMusicnn(MODEL, threads) as net:
        for flac in sorted(folder.glob("*.flac")):
            reference = np.load(flac.with_suffix(".npz"))
            batch = patches(log_mel(flac)[0])
            if batch.shape != reference["mel"].shape:
                raise ValueError(f"{flac.name}: {batch.shape} patches, the reference has {reference['mel'].shape}")
            logits, sigmoid = net.run(batch, batch_size)
            ours = {"mel": batch, "logits": logits, "patch_sigmoid": sigmoid,
                    "track_mean": sigmoid.mean(axis=0) if len(sigmoid) else np.full(len(net.labels), np.nan)}
            expected = {"mel": reference["mel"], **{k: reference[prefix + k] for k in worst if k != "mel"}}
            deltas = {k: float(np.nanmax(np.abs(ours[k] - expected[k]), initial=0.0)) for k in worst}
            for key, delta in deltas.items():
                worst[key] = max(worst[key], delta)
            clips.append({"clip": flac.stem, "n_patches": len(batch), **{f"max_abs_{k}": v for k, v in deltas.items()}})
    return {"model": MODEL, "batch": batch_size, "versions": versions(), "clips": clips,
            "max_abs": worst, "tolerance_patch_sigmoid": tolerance, "ok": worst["patch_sigmoid"] <= tolerance}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="audio files or folders")
    parser.add_argument("--batch", type=int, default=64, help="patches per session run (default 64)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0: its default)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--check-reference", type=Path, metavar="DIR",
                        help="compare with the stored TF outputs of DIR/<clip>.npz instead of timing")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="--check-reference: max |Δ| of patch sigmoids")
    args = parser.parse_args()
    if args.check_reference is not None:
        report = check_reference(args.check_reference, args.batch, args.threads, args.tolerance)
        for clip in report["clips"]:
            print(" ".join(f"{k}={v:.2e}" if isinstance(v, float) else f"{k}={v}" for k, v in clip.items()))
        print("max |Δ|: " + ", ".join(f"{k} {v:.2e}" for k, v in report["max_abs"].items())
              + f" (batch {args.batch}): {'OK' if report['ok'] else 'FAILED'} at {args.tolerance:g}")
    else:
        if not args.inputs:
            parser.error("name audio files or folders (or --check-reference DIR)")
        report = benchmark(audio_files(args.inputs), args.batch, args.threads)
        print(f"audio {report['audio_s']:.1f} s in {report['n_tracks']} tracks ({report['n_patches']} patches), "
              f"batch {args.batch}")
        print(f"wall total {report['wall_total_s']:.2f} s = {report['xrealtime_total']:.1f}x realtime; "
              f"after load {report['wall_after_load_s']:.2f} s = {report['xrealtime_after_load']:.1f}x realtime "
              f"(load {report['load_s']:.2f} s, decode+mel {report['frontend_s']:.2f} s, "
              f"network {report['network_s']:.2f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if not report.get("ok", True):
        sys.exit(1)


if __name__ == "__main__":
    main()
