"""``predict --plot``: where the taggram of each (file, model) goes, and drawing it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from catalogue_tagger.models.specs import ModelSpec
from catalogue_tagger.records import TrackResult


def plot_path_for(plot_path: str, file_path: str, model: str, several: bool) -> Path:
    """``plot_path`` itself for one (file, model); else ``<stem>-<file stem>-<model>.png`` beside it."""
    target = Path(plot_path)
    if not several:
        return target
    return target.with_name(f"{target.stem}-{Path(file_path).stem}-{model}{target.suffix or '.png'}")


def draw_taggrams(plot_path: str, file_path: str, result: TrackResult, specs: Mapping[str, ModelSpec], several: bool) -> list[Path]:
    try:
        from catalogue_tagger.plots import taggram
    except ImportError as exc:
        from catalogue_tagger.cli.output import CannotRun

        raise CannotRun(f"--plot needs matplotlib: pip install 'catalogue-tagger[plots]' ({exc})") from exc

    written = []
    for output in result.outputs:
        if output.segments is None:
            continue
        spec = specs[output.model]
        written.append(
            taggram(output.segments, spec.labels, plot_path_for(plot_path, file_path, output.model, several),
                    hop_s=spec.hop / spec.sample_rate, title=f"{Path(file_path).name} — {output.model}")
        )
    return written
