"""``models train-waveform`` end to end: corpus cache -> teacher targets -> (baseline) -> training -> report.

Every step reuses what an earlier run left: decoded tracks, taggrams, ``OUT/baseline.json``, and with
``resume`` the last checkpoint. The report is rewritten after every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from catalogue_tagger.training.baseline import BaselineConfig, random_weights_baseline
from catalogue_tagger.training.corpus import Corpus, prepare
from catalogue_tagger.training.data import TrackSet
from catalogue_tagger.training.evaluate import evaluate_model, evaluate_scorer, prior_scorer
from catalogue_tagger.training.report import write_report
from catalogue_tagger.training.targets import TEACHERS, compute_targets
from catalogue_tagger.training.train import (MODEL_NAME, WINDOW, EpochRecord, LossScales, TrainConfig,
                                             TrainingHooks, new_student, train)

logger = logging.getLogger(__name__)


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def prepare_corpus(corpus_dir: Path, cache_dir: Path, *, seed: int = 0, val_fraction: float = 0.15,
                   device: str = "cpu", teachers: Sequence[str] = TEACHERS, embedding_teacher: str = "",
                   held_apart: Sequence[str] = (), max_track_s: float | None = None, mixes: int = 0) -> Corpus:
    """Decode (once) and compute the teacher outputs (once): the tag teachers on the training and validation
    tracks, the embedding teacher on every track (held-apart ones included, for the embedding check)."""
    corpus = prepare(corpus_dir, cache_dir, val_fraction=val_fraction, seed=seed, held_apart=held_apart,
                     max_track_s=max_track_s, mixes=mixes, on_track=lambda t: logger.debug("decoded %s", t))
    logger.info("corpus: %s", json.dumps(corpus.summary()))
    progress = lambda m, t: logger.debug("%s outputs of %s", m, t)  # noqa: E731
    compute_targets(corpus, teachers, device, on_track=progress,
                    tracks=corpus.split("train") + corpus.split("validation"))
    if embedding_teacher:
        compute_targets(corpus, [embedding_teacher], device, on_track=progress)
    return corpus


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_run_file(out_dir: Path, name: str) -> dict[str, Any] | None:
    """``OUT/<name>`` (``baseline.json``, ``final.json``) as JSON, or None before the run has written it."""
    path = out_dir / name
    return json.loads(path.read_text()) if path.exists() else None


def evaluate_selected(out_dir: Path, selected: dict[str, Any], val_data: TrackSet, config: TrainConfig,
                      scales: LossScales | None = None) -> dict[str, Any]:
    """The selected weights (``OUT/samplecnn-mtt.safetensors``, their record ``selected`` from ``OUT/best.json``)
    on every validation window, into ``OUT/final.json``.

    The per-epoch figures use up to ``val_windows_per_track`` windows per track (cheap enough to run every
    epoch); acceptance is judged on all of them.
    """
    from safetensors.torch import load_file

    weights = out_dir / f"{MODEL_NAME}.safetensors"
    model = new_student(config.seed, config.embedding_size)
    model.load_state_dict(load_file(str(weights)), strict=True)
    scales = scales or LossScales()
    metrics = evaluate_model(model.to(config.device), val_data, WINDOW, config.device, max_windows=0,
                             batch_size=config.batch_size, embedding_scale=scales.embedding,
                             logit_scale=scales.logit)
    final = {"epoch": selected["epoch"], "weights_sha256": selected["weights_sha256"], **metrics}
    (out_dir / "final.json").write_text(json.dumps(final, indent=1))
    logger.info("selected weights (epoch %d) on every validation window: %s", selected["epoch"], json.dumps(metrics))
    return final


def train_waveform(corpus_dir: Path, out_dir: Path, config: TrainConfig, *, cache_dir: Path | None = None,
                   resume: bool = False, baseline: bool = False, hooks: TrainingHooks | None = None
                   ) -> dict[str, Any] | None:
    """Run the whole recipe; returns the report (None when no epoch has been trained yet)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = prepare_corpus(corpus_dir, cache_dir or corpus_dir / ".cache", seed=config.seed, device=config.device,
                            teachers=config.teachers, embedding_teacher=config.embedding_teacher,
                            held_apart=config.held_apart, max_track_s=config.max_track_s, mixes=config.mixes)
    embedding_teacher = config.embedding_teacher or None
    train_data = TrackSet.load(corpus, "train", config.teachers, embedding_teacher)
    val_data = TrackSet.load(corpus, "validation", config.teachers, embedding_teacher)
    if baseline and read_run_file(out_dir, "baseline.json") is None:
        started = time.perf_counter()
        metrics = random_weights_baseline(train_data, val_data, BaselineConfig(seed=config.seed, device=config.device,
                                                                               batch_size=config.batch_size))
        record = {**metrics, "device": device_description(config.device), "seconds": time.perf_counter() - started}
        (out_dir / "baseline.json").write_text(json.dumps(record, indent=1))
        logger.info("random-weights baseline: %s", json.dumps(record))
    prior = evaluate_scorer(prior_scorer(train_data), val_data, WINDOW, max_windows=config.val_windows_per_track)
    logger.info("tag-prior reference (no audio): %s", json.dumps(prior))
    meta: dict[str, Any] = {"model": "samplecnn-mtt", "teachers": list(config.teachers),
                            "embedding_teacher": config.embedding_teacher or None,
                            "init_weights_sha256": file_sha256(Path(config.init_weights)) if config.init_weights else None,
                            "device": device_description(config.device), "torch": torch.__version__,
                            "prior_reference": prior}

    def report(history: list[EpochRecord], final: dict[str, Any] | None = None) -> dict[str, Any]:
        meta["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return write_report(out_dir, history, corpus=corpus.summary(), config=asdict(config),
                            baseline=read_run_file(out_dir, "baseline.json"), meta=meta, final=final)

    history = train(train_data, val_data, out_dir, config, resume=resume, hooks=hooks, on_epoch=report)
    if not history:
        return None
    selected = json.loads((out_dir / "best.json").read_text())
    final = read_run_file(out_dir, "final.json")
    if len(history) == config.epochs and (final is None or final["epoch"] != selected["epoch"]):
        final = evaluate_selected(out_dir, selected, val_data, config, LossScales.of(train_data, config))
    return report(history, final)
