"""Distil the spectrogram taggers into SampleCNN: BCE on the teachers' soft targets (or, with
``tag_loss="logit"``, the mean squared error of the student's log-odds against the teachers', divided by their
mean per-tag variance), resumable epoch by epoch.

With an embedding teacher, a linear projection of the student's 512-d feature is trained at the same time to
predict that teacher's embedding of the same window (mean squared error divided by the teacher embedding's mean
per-dimension variance, weighted by ``embedding_weight``); the projection is then the student's embedding. The
student may start from earlier weights (``init_weights``, e.g. the previous version's; layers it lacks keep
their initialisation).

Every epoch ends with a checkpoint ``OUT/checkpoints/last.pt`` (model, optimizer, torch RNG, epoch, history);
the data plan of epoch ``e`` depends only on ``(seed, e)`` (:func:`~catalogue_tagger.training.data.plan_epoch`),
so ``resume=True`` continues exactly as an uninterrupted run would. The student with the lowest validation
loss is exported as ``OUT/samplecnn-mtt.safetensors`` (the registry's state-dict layout) with its metrics in
``OUT/best.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from catalogue_tagger.models import samplecnn
from catalogue_tagger.models.base import Tagger
from catalogue_tagger.models.labels import MTT_LABELS
from catalogue_tagger.models.specs import get_spec, samplecnn_spec
from catalogue_tagger.training.data import (TrackSet, embedding_batch, logit_targets, make_batch, plan_epoch,
                                            window_rows)
from catalogue_tagger.training.evaluate import embed_rows, evaluate_model
from catalogue_tagger.training.targets import TEACHERS

logger = logging.getLogger(__name__)

MODEL_NAME = "samplecnn-mtt"
WINDOW = samplecnn.WINDOW
RIDGE = 0.1  # ridge of the projection's initial fit, relative to the features' mean variance


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # "cosine": lr * (1 + cos(pi * epoch / epochs)) / 2 per epoch; "constant"
    weight_decay: float = 1e-5
    seed: int = 0
    crops_per_track: int = 0  # cap on examples per track and epoch (one per window of audio); 0: no cap
    gain_db: float = 6.0  # random gain in [-gain_db, +gain_db]
    val_windows_per_track: int = 16  # 0: every window
    device: str = "cpu"
    precision: str = "fp32"  # "bf16": forward pass under bfloat16 autocast (weights, loss, optimizer stay fp32)
    teachers: tuple[str, ...] = TEACHERS  # the tag targets are the mean of these taggers' sigmoids
    tag_loss: str = "bce"  # "bce" on the soft targets; "logit": MSE of log-odds over the targets' per-tag variance
    dropout: float | None = None  # dropout before the tag layer while training (None: SampleCNN's 0.5)
    embedding_teacher: str = ""  # "": no embedding distillation; else a teacher with an embedding output
    embedding_weight: float = 1.0  # weight of the (variance-normalised) embedding loss beside the tag BCE
    init_weights: str = ""  # safetensors of a SampleCNN to start from ("": random initialisation)
    projection_fit_windows: int = 0  # > 0: a fresh projection starts at a ridge fit on this many windows per track
    held_apart: tuple[str, ...] = ()  # packages neither trained nor validated on (corpus option)
    max_track_s: float | None = None  # the first seconds of each track only (corpus option)
    mixes: int = 0  # mixtures of two training tracks per training track, labelled by the teachers (corpus option)

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown lr schedule {self.lr_schedule!r}; expected 'cosine' or 'constant'")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {self.precision!r}; expected 'fp32' or 'bf16'")
        if self.tag_loss not in ("bce", "logit"):
            raise ValueError(f"unknown tag loss {self.tag_loss!r}; expected 'bce' or 'logit'")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout {self.dropout} is not in [0, 1)")
        if self.embedding_teacher and not get_spec(self.embedding_teacher).embedding_size:
            raise ValueError(f"{self.embedding_teacher} has no embedding output to distil")

    @property
    def embedding_size(self) -> int:
        """The student's embedding: the teacher's size when distilling one, else SampleCNN's pooled feature."""
        return get_spec(self.embedding_teacher).embedding_size if self.embedding_teacher else samplecnn.EMBEDDING_SIZE


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    val: dict[str, float]
    seconds: float
    train_windows: int
    windows_per_s: float  # training throughput (forward + backward + step)


class TrainingHooks:
    """What a caller sees of training; the default does nothing. See :mod:`catalogue_tagger.training.progress`."""

    def epoch_started(self, epoch: int, n_batches: int) -> None: ...

    def batch_done(self, loss: float) -> None: ...

    def epoch_done(self, record: EpochRecord) -> None: ...


def new_student(seed: int, embedding_size: int = samplecnn.EMBEDDING_SIZE) -> samplecnn.WaveformTagger:
    """SampleCNN with its initial weights, which depend only on ``seed`` (and the embedding size)."""
    torch.manual_seed(seed)
    return samplecnn.build(samplecnn_spec(MODEL_NAME, MTT_LABELS, embedding_size=embedding_size))


def load_student(path: Path) -> samplecnn.WaveformTagger:
    """A SampleCNN from safetensors, in eval mode, with the projection when the file has one."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    size = state["net.projection.weight"].shape[0] if "net.projection.weight" in state else samplecnn.EMBEDDING_SIZE
    model = new_student(0, size)
    model.load_state_dict(state, strict=True)
    return model.eval()


def initial_student(config: TrainConfig, data: TrackSet | None = None) -> samplecnn.WaveformTagger:
    """The student before its first epoch: seeded initialisation, then ``config.init_weights`` where given (only
    the projection may be missing from them). A fresh projection starts at the teacher's mean embedding of
    ``data`` (its bias), or, with ``config.projection_fit_windows`` > 0, at the least-squares fit of the teacher's
    embedding on the initial student's features (:func:`fit_projection`)."""
    from safetensors.torch import load_file

    model = new_student(config.seed, config.embedding_size)
    if config.init_weights:
        result = model.load_state_dict(load_file(config.init_weights), strict=False)
        if result.unexpected_keys or any(not k.startswith("net.projection.") for k in result.missing_keys):
            raise ValueError(f"{config.init_weights} does not fit the student: missing {result.missing_keys}, "
                             f"unexpected {result.unexpected_keys}")
        fresh_projection = bool(result.missing_keys)
    else:
        fresh_projection = True
    if model.net.projection is not None and fresh_projection and data is not None and data.has_embeddings:
        if config.projection_fit_windows:
            fit_projection(model, data, config)
        else:
            with torch.no_grad():
                model.net.projection.bias.copy_(torch.from_numpy(data.embedding_stats()[0]))
    return model


@torch.no_grad()
def fit_projection(model: samplecnn.WaveformTagger, data: TrackSet, config: TrainConfig) -> float:
    """Set the projection to the ridge regression of the teacher's window embeddings on the student's features
    (eval mode, ``config.projection_fit_windows`` evenly spread windows per track); returns the fit's loss
    (mean squared error over the teacher embedding's mean variance) on those windows."""
    projection = model.net.projection
    if projection is None:
        raise ValueError("the student has no projection to fit")
    rows = window_rows(data, WINDOW, config.projection_fit_windows)
    model.eval()
    features = torch.from_numpy(embed_rows(model.net, data, rows, WINDOW)).double()
    targets = torch.from_numpy(np.stack([data.targets[i].embedding_window(s, WINDOW) for i, s in rows])).double()
    x_mean, y_mean = features.mean(dim=0), targets.mean(dim=0)
    xc, yc = features - x_mean, targets - y_mean
    gram = xc.T @ xc
    ridge = max(RIDGE * float(torch.trace(gram)) / gram.shape[0], 1e-6)  # a floor for a single window
    weight = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc)  # [512, E]
    projection.weight.copy_(weight.T.float())
    projection.bias.copy_((y_mean - x_mean @ weight).float())
    loss = float(((features @ weight + y_mean - x_mean @ weight - targets) ** 2).mean() / targets.var(dim=0, correction=0).mean().clamp_min(1e-12))
    logger.info("projection fitted on %d windows: normalised loss %.4f", len(rows), loss)
    return loss


def save_weights(model: Tagger, path: Path) -> str:
    """Write the state dict as safetensors (temp file + rename); returns its sha256."""
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``: a function of the epoch alone, so a resumed run follows the same curve."""
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * (1 + math.cos(math.pi * epoch / config.epochs)) / 2


@dataclass(frozen=True)
class LossScales:
    """What the variance-normalised losses are divided by, measured on the training tracks."""

    embedding: float | None = None  # the teacher embedding's mean per-dimension variance
    logit: float | None = None  # the teachers' log-odds targets' mean per-tag variance

    @classmethod
    def of(cls, data: TrackSet, config: TrainConfig) -> LossScales:
        return cls(data.embedding_stats()[1] if config.embedding_teacher else None,
                   data.tag_logit_scale(WINDOW) if config.tag_loss == "logit" else None)


def objective(val: dict[str, float], config: TrainConfig) -> float:
    """The validation figure the selected epoch minimises: the tag loss trained on plus the weighted embedding
    loss."""
    tag = val["logit_loss"] if config.tag_loss == "logit" else val["loss"]
    return tag + config.embedding_weight * val.get("embedding_loss", 0.0)


def train_epoch(model: Tagger, optimizer: torch.optim.Optimizer, data: TrackSet, config: TrainConfig, epoch: int,
                hooks: TrainingHooks, scales: LossScales | None = None) -> tuple[float, int]:
    """One epoch (0-based ``epoch``, full batches only); returns the mean training loss (tag loss plus the
    weighted embedding loss) and the windows seen."""
    scales = scales or LossScales()
    plan = plan_epoch(data, WINDOW, config.seed, epoch, crops_per_track=config.crops_per_track,
                      gain_db=config.gain_db)
    n_batches = len(plan) // config.batch_size
    if n_batches == 0:
        raise ValueError(f"{len(plan)} training windows: fewer than one batch of {config.batch_size}")
    for group in optimizer.param_groups:
        group["lr"] = epoch_lr(config, epoch)
    autocast = torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16,
                              enabled=config.precision == "bf16")
    hooks.epoch_started(epoch + 1, n_batches)
    model.train()
    total = 0.0
    for rows in plan.batches(config.batch_size, drop_last=True):
        x, y = make_batch(data, plan, rows, WINDOW)
        with autocast:
            outputs = model(torch.from_numpy(x).to(config.device))
        if config.tag_loss == "logit":
            target = torch.from_numpy(logit_targets(y)).to(config.device)
            loss = F.mse_loss(outputs[1].float(), target) / (scales.logit or 1.0)
        else:
            loss = F.binary_cross_entropy_with_logits(outputs[1].float(), torch.from_numpy(y).to(config.device))
        if config.embedding_teacher:
            target = torch.from_numpy(embedding_batch(data, plan, rows, WINDOW)).to(config.device)
            loss = loss + config.embedding_weight * F.mse_loss(outputs[2].float(), target) / (scales.embedding or 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        value = float(loss.detach())
        total += value * len(x)
        hooks.batch_done(value)
    return total / (n_batches * config.batch_size), n_batches * config.batch_size


def train(train_data: TrackSet, val_data: TrackSet, out_dir: Path, config: TrainConfig, *, resume: bool = False,
          hooks: TrainingHooks | None = None, on_epoch: Callable[[list[EpochRecord]], object] | None = None
          ) -> list[EpochRecord]:
    """Train up to ``config.epochs`` epochs (counting those already in a resumed checkpoint)."""
    hooks = hooks or TrainingHooks()
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "checkpoints" / "last.pt"
    scales = LossScales.of(train_data, config)
    resuming = resume and last.exists()
    model = (new_student(config.seed, config.embedding_size) if resuming else initial_student(config, train_data))
    if config.dropout is not None:
        model.net.dropout.p = config.dropout
    model = model.to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[EpochRecord] = []
    best_loss = float("inf")
    if resuming:
        state = torch.load(last, map_location=config.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history = [EpochRecord(**r) for r in state["history"]]
        best_loss = min((r.val.get("objective", r.val["loss"]) for r in history), default=best_loss)
        logger.info("resumed from %s after epoch %d", last, state["epoch"])
    elif resume:
        logger.info("no checkpoint at %s; starting from scratch", last)
    for epoch in range(len(history), config.epochs):
        started = time.perf_counter()
        train_loss, n_windows = train_epoch(model, optimizer, train_data, config, epoch, hooks, scales)
        train_s = time.perf_counter() - started
        val = evaluate_model(model, val_data, WINDOW, config.device, max_windows=config.val_windows_per_track,
                             batch_size=config.batch_size, embedding_scale=scales.embedding,
                             logit_scale=scales.logit)
        val["objective"] = objective(val, config)
        record = EpochRecord(epoch + 1, train_loss, val, time.perf_counter() - started, n_windows,
                             n_windows / max(train_s, 1e-9))
        history.append(record)
        if val["objective"] < best_loss:
            best_loss = val["objective"]
            sha256 = save_weights(model, out_dir / f"{MODEL_NAME}.safetensors")
            (out_dir / "best.json").write_text(json.dumps({**asdict(record), "weights_sha256": sha256}, indent=1))
        _save_checkpoint(last, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "epoch": epoch + 1, "history": [asdict(r) for r in history], "config": asdict(config),
        })
        hooks.epoch_done(record)
        logger.info("epoch %d: train loss %.5f, val loss %.5f, macro ROC-AUC %.4f, median Spearman %.4f, %.0f s",
                    record.epoch, train_loss, val["loss"], val["macro_roc_auc"], val["median_spearman"],
                    record.seconds)
        if on_epoch:
            on_epoch(history)
    return history

