"""The training report: ``report.json`` (corpus, config, every epoch, best epoch, baseline, acceptance) and
``report.png`` (loss curves; validation ROC-AUC and Spearman per epoch against the thresholds and the baseline)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from catalogue_tagger.training.evaluate import MIN_MACRO_ROC_AUC, MIN_MEDIAN_SPEARMAN, passes
from catalogue_tagger.training.train import EpochRecord


def report_data(history: list[EpochRecord], *, corpus: dict[str, Any], config: dict[str, Any],
                baseline: dict[str, Any] | None, meta: dict[str, Any], final: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """``final``: the selected epoch on every validation window; when given, acceptance is judged on it."""
    best = min(history, key=lambda r: r.val.get("objective", r.val["loss"])) if history else None
    return {
        **meta,
        "corpus": corpus,
        "config": config,
        "epochs": [asdict(r) for r in history],
        "best_epoch": asdict(best) if best else None,
        "thresholds": {"macro_roc_auc": MIN_MACRO_ROC_AUC, "median_spearman": MIN_MEDIAN_SPEARMAN},
        "best_epoch_all_windows": final,
        "accepted": bool(best and passes(final if final else best.val)),
        "baseline_random_weights": baseline,
        "train_seconds": sum(r.seconds for r in history),
    }


def plot(history: list[EpochRecord], baseline: dict[str, Any] | None, path: Path,
         prior: dict[str, Any] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r.epoch for r in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r.train_loss for r in history], "o-", label="train (augmented crops)")
    ax_loss.plot(epochs, [r.val["loss"] for r in history], "s-", label="validation")
    if all("embedding_loss" in r.val for r in history):
        ax_embed = ax_loss.twinx()
        ax_embed.plot(epochs, [r.val["embedding_loss"] for r in history], "^--", color="C2",
                      label="validation embedding loss (right)")
        ax_embed.set(ylabel="embedding MSE / teacher variance")
        ax_embed.legend(loc="upper center")
    if baseline:
        ax_loss.axhline(baseline["loss"], color="grey", ls=":", label="random-weights baseline (val)")
    ax_loss.set(xlabel="epoch", ylabel="tag BCE vs teacher soft targets", title="Loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [r.val["macro_roc_auc"] for r in history], "o-", color="C0", label="macro ROC-AUC")
    ax_metric.plot(epochs, [r.val["median_spearman"] for r in history], "s-", color="C1", label="median Spearman")
    ax_metric.axhline(MIN_MACRO_ROC_AUC, color="C0", ls="--", lw=0.8, label=f"ROC-AUC ≥ {MIN_MACRO_ROC_AUC}")
    ax_metric.axhline(MIN_MEDIAN_SPEARMAN, color="C1", ls="--", lw=0.8, label=f"Spearman ≥ {MIN_MEDIAN_SPEARMAN}")
    if baseline:
        ax_metric.axhline(baseline["macro_roc_auc"], color="C0", ls=":", label="baseline ROC-AUC")
        ax_metric.axhline(baseline["median_spearman"], color="C1", ls=":", label="baseline Spearman")
    if prior:
        ax_metric.axhline(prior["median_spearman"], color="grey", ls="-.", lw=0.8, label="tag prior Spearman (no audio)")
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_metric.set(xlabel="epoch", ylabel="validation (tracks never trained on)", title="Agreement with teachers")
    ax_metric.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_report(out_dir: Path, history: list[EpochRecord], *, corpus: dict[str, Any], config: dict[str, Any],
                 baseline: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                 final: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report.json`` and, when there is at least one epoch, ``report.png``; returns the JSON data."""
    data = report_data(history, corpus=corpus, config=config, baseline=baseline, meta=meta or {}, final=final)
    tmp = out_dir / "report.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(out_dir / "report.json")
    if history:
        plot(history, baseline, out_dir / "report.png", prior=data.get("prior_reference"))
    return data
