"""Static int8: a QDQ graph calibrated on real music, for ONNX Runtime on the CPU.

``catalogue-tagger compile --model NAME --precision int8 --calibration DIR`` decodes up to
:data:`CALIBRATION_TRACKS` tracks of ``DIR`` (evenly spread over the sorted file list), cuts each into the model's
windows and keeps :data:`WINDOWS_PER_TRACK` of them at seeded random positions; ONNX Runtime's
``quantize_static`` runs the float32 graph on those windows, records every activation's range (min/max) and
writes a graph with ``QuantizeLinear``/``DequantizeLinear`` pairs around the weighted layers: weights int8 per
output channel, activations uint8. What stays float32:

- the front end (``/frontend/…``: framing, DFT, mel, log): its dynamic range is the whole point of the log;
- the first and the last weighted layer of the network: quantizing them moved SampleCNN's track means most
  (max |Δ| 0.063 → 0.041 on 13 real tracks) and keeping them float was also faster (45 → 53 segments/s), since
  the first layer sees one input channel and the last is a small matrix product.

Dynamic int8 (weights only) was measured 4x slower than float32 on these networks: its ``ConvInteger`` has no
fast kernel, so only static QDQ is offered. The calibration set is part of the artifact's provenance: its file
names, sizes and the windows' count are written beside the graph (``….onnx.json``); compiling again with other
music replaces the graph. ``tag`` never calibrates: a missing int8 graph is an error naming this command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from catalogue_tagger.decode import decode_all
from catalogue_tagger.errors import TaggerError
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.segment import Windowing, segment_track
from catalogue_tagger.sources.base import AUDIO_EXTENSIONS, is_audio_name

logger = logging.getLogger(__name__)

CALIBRATION_TRACKS = 24
WINDOWS_PER_TRACK = 4
CALIBRATION_SECONDS = 180.0  # decoded per calibration track (its windows are drawn from these)
CALIBRATION_BATCH = 8
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


class CalibrationError(TaggerError):
    """The calibration folder holds no audio that decodes."""

    kind = "calibration_error"


def calibration_files(folder: Path, tracks: int = CALIBRATION_TRACKS) -> list[Path]:
    """Up to ``tracks`` audio files under ``folder`` (recursively, through linked folders too), evenly spread over
    their sorted list."""
    found = sorted(Path(root) / name for root, _, names in os.walk(folder, followlinks=True) for name in names
                   if is_audio_name(name))
    if not found:
        raise CalibrationError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {folder}")
    step = max(1, len(found) // tracks)
    return found[::step][:tracks]


def calibration_windows(model: str, files: list[Path], per_track: int = WINDOWS_PER_TRACK, seed: int = 0
                        ) -> npt.NDArray[np.float32]:
    """``(n, window)``: ``per_track`` windows of each file at seeded random positions (all of a short one)."""
    spec = get_spec(model)
    windowing = Windowing(spec.window, spec.hop, spec.pad)
    rng = np.random.default_rng(seed)
    chosen: list[npt.NDArray[np.float32]] = []
    for path in files:
        try:
            with path.open("rb") as fh:
                wave, _ = decode_all(fh, max_duration_s=CALIBRATION_SECONDS, name=str(path))
        except TaggerError as exc:
            logger.warning("calibration: skipping %s: %s", path, exc)
            continue
        windows, _ = segment_track(wave, windowing)
        picks = rng.choice(len(windows), min(per_track, len(windows)), replace=False)
        chosen.append(windows[np.sort(picks)])
    if not chosen:
        raise CalibrationError(f"none of the {len(files)} calibration files decoded")
    return np.concatenate(chosen).astype(np.float32)


def kept_float(graph: onnx.GraphProto, front_end_prefix: str) -> list[str]:
    """Names of the nodes left in float32: the front end, and the first and last weighted layer after it."""
    front = [n.name for n in graph.node if n.name.startswith(front_end_prefix)]
    weighted = [n.name for n in graph.node if n.op_type in WEIGHTED_OPS and not n.name.startswith(front_end_prefix)]
    return front + sorted({weighted[0], weighted[-1]}) if weighted else front


class _Windows:
    """ONNX Runtime's ``CalibrationDataReader``: the windows in batches of :data:`CALIBRATION_BATCH`."""

    def __init__(self, windows: npt.NDArray[np.float32]) -> None:
        self._batches: Iterator[dict[str, npt.NDArray[np.float32]]] = iter(
            {"wave": windows[i : i + CALIBRATION_BATCH]} for i in range(0, len(windows), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)


def quantize_int8(fp32_path: Path, out_path: Path, windows: npt.NDArray[np.float32], front_end_prefix: str) -> None:
    """Write the static int8 QDQ graph of the float32 graph ``fp32_path``, calibrated on ``windows``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        reader = _Windows(windows)
        quantize_static(
            str(prepared), str(out_path), reader,  # duck-typed: ONNX Runtime only calls get_next()
            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(WEIGHTED_OPS), nodes_to_exclude=kept_float(graph.graph, front_end_prefix),
        )


def provenance(files: list[Path], windows: npt.NDArray[np.float32]) -> dict[str, object]:
    """What the int8 graph was calibrated on: file names and sizes, window count, and a fingerprint of both."""
    listed = [{"file": p.name, "bytes": p.stat().st_size} for p in files]
    digest = hashlib.sha256(json.dumps(listed).encode() + windows.tobytes()).hexdigest()
    return {"calibration_files": listed, "calibration_windows": int(len(windows)), "calibration_sha256": digest,
            "method": "ONNX Runtime quantize_static, QDQ, MinMax, int8 weights per channel, uint8 activations"}
