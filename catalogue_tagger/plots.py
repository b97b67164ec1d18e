"""Pictures: a track's taggram, and catalogue-level figures from the database.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas directly — no pyplot, so no
process-wide backend or figure registry is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from catalogue_tagger.store.intelligence import CatalogueReport

TOP_TAGS = 12


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def taggram(
    segments: npt.NDArray[np.float32],
    labels: Sequence[str],
    path: str | Path,
    *,
    hop_s: float,
    title: str = "",
    top: int = TOP_TAGS,
) -> Path:
    """Draw ``segments (n_segments, n_labels)`` as a heat map of the ``top`` tags by track mean (rows,
    best first) over time (columns, segment start in seconds), with the track means as bars beside it."""
    scores = np.asarray(segments, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(labels) or scores.shape[0] == 0:
        raise ValueError(f"segments must be (n_segments, {len(labels)}), got {scores.shape}")
    means = scores.mean(axis=0)
    order = np.argsort(-means, kind="stable")[: min(top, len(labels))]
    grid = scores[:, order].T  # (top, n_segments)
    n_seg = scores.shape[0]
    fig = Figure(figsize=(min(16, 6 + 0.12 * n_seg), 0.42 * len(order) + 1.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[4, 1], sharey=True)
    image = left.imshow(grid, aspect="auto", origin="upper", cmap="magma", vmin=0.0, vmax=1.0,
                        extent=(0, n_seg * hop_s, len(order) - 0.5, -0.5), interpolation="nearest")
    left.set_yticks(range(len(order)), [labels[i] for i in order])
    left.set_xlabel("time (s), one column per segment")
    left.set_title(title or "taggram")
    right.barh(range(len(order)), means[order], color="tab:blue")
    right.set_xlim(0, 1)
    right.set_xlabel("track mean")
    for y, value in enumerate(means[order]):
        right.text(min(value + 0.02, 0.75), y, f"{value:.2f}", va="center", fontsize=8)
    fig.colorbar(image, ax=left, label="segment score", pad=0.01)
    return _save(fig, Path(path))


def catalogue_figures(report: CatalogueReport, directory: str | Path, top: int = 25) -> list[Path]:
    """Write tag prevalence, score histograms, failures by kind and throughput per run into ``directory``."""
    out = Path(directory)
    return [
        _prevalence(report, out / "tag_prevalence.png", top),
        _histograms(report, out / "score_histograms.png"),
        _failures(report, out / "failures_by_kind.png"),
        _throughput(report, out / "throughput_per_run.png"),
    ]


def _prevalence(report: CatalogueReport, path: Path, top: int) -> Path:
    models = sorted({m for m, *_ in report.prevalence})
    fig = Figure(figsize=(7 * max(1, len(models)), 0.28 * top + 1.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(models)), squeeze=False)[0])
    if not models:
        axes[0].text(0.5, 0.5, "no tagged tracks", ha="center", va="center")
    for ax, model in zip(axes, models):
        rows = [r for r in report.prevalence if r[0] == model][:top]
        tags = [r[1] for r in rows][::-1]
        ax.barh(tags, [r[2] for r in rows][::-1], color="tab:blue", label="mean score")
        ax.barh(tags, [r[3] for r in rows][::-1], color="tab:orange", alpha=0.55, height=0.45,
                label=f"share of tracks ≥ {report.cut:g}")
        ax.set_xlim(0, min(1.0, max([0.05, *(1.15 * max(r[2], r[3]) for r in rows)])))
        ax.set_title(f"{model}: top {len(rows)} tags")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"tag prevalence over {int(report.counts['tagged'])} tagged tracks")
    return _save(fig, path)


def _histograms(report: CatalogueReport, path: Path) -> Path:
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    edges = np.linspace(0, 1, report.bins + 1)
    for model, counts in sorted(report.histogram.items()):
        ax.stairs(counts, edges, label=model, linewidth=1.6)
    ax.set_yscale("log")
    ax.set_xlabel("track-level tag score")
    ax.set_ylabel("tag rows (log)")
    ax.set_title("score histograms, all tags, per current model")
    if report.histogram:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no tagged tracks", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def _failures(report: CatalogueReport, path: Path) -> Path:
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    kinds = sorted(report.failures, key=lambda k: -report.failures[k])
    if kinds:
        ax.barh(kinds[::-1], [report.failures[k] for k in kinds][::-1], color="tab:red")
        ax.set_xlabel("tracks")
    else:
        ax.text(0.5, 0.5, "no failed tracks", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    c = report.counts
    ax.set_title(f"failures by kind ({int(c['failed'])} failed of {int(c['total'])} tracks)")
    return _save(fig, path)


def _throughput(report: CatalogueReport, path: Path) -> Path:
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    runs = [r for r in report.runs if r["wall_s"]]
    if runs:
        ids = [str(r["run_id"]) for r in runs]
        bars = ax.bar(ids, [r["xrealtime"] for r in runs], color="tab:green", width=0.6)
        ax.set_xlim(-0.8, max(len(runs), 4) - 0.2)
        for bar, r in zip(bars, runs):
            ax.annotate(f"{r['tagged']} tr", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_xlabel("run")
        ax.set_ylabel("× realtime (audio s / wall s)")
    else:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("throughput per run")
    return _save(fig, path)
