"""``catalogue-tagger predict FILE... --model NAME``: tags of files, as JSON lines or a table."""

from __future__ import annotations

import sys
from typing import Any

import click

from catalogue_tagger.cli.options import models_option, run_options, settings_with
from catalogue_tagger.cli.output import EXIT_SOME_FAILED, echo_json, print_table, user_errors
from catalogue_tagger.config import Settings
from catalogue_tagger.records import Descriptors, ModelOutput, TrackFailure

TOP_N = 5


def _round(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]


def prediction_json(path: str, output: ModelOutput, labels: tuple[str, ...], duration_s: float, flags: tuple[str, ...], *, segments: bool, embedding: bool, descriptors: Descriptors | None = None) -> dict[str, Any]:
    scores = {label: round(float(s), 6) for label, s in zip(labels, output.mean)}
    top = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:TOP_N]
    record: dict[str, Any] = {
        "path": path,
        "model": output.model,
        "duration_s": round(duration_s, 3),
        "n_segments": output.n_segments,
        "tags": scores,
        "top": [[tag, score] for tag, score in top],
        "flags": list(flags),
    }
    if descriptors is not None:
        record["descriptors"] = descriptors.as_dict()
    if segments and output.segments is not None:
        record["segments"] = [_round(row) for row in output.segments]
    if embedding and output.embedding is not None:
        record["embedding"] = _round(output.embedding)
    return record


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@models_option
@click.option("--segments", is_flag=True, help="Include the per-segment scores (the taggram).")
@click.option("--embedding", is_flag=True, help="Include the track embedding (models that have one).")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw the taggram to this PNG (several files or models: NAME-<file>-<model>.png beside it).")
@run_options
@click.pass_obj
def predict(settings: Settings, /, files: tuple[str, ...], segments: bool, embedding: bool, fmt: str,
            plot_path: str | None, **overrides: object) -> None:
    """Tag FILES and print the track scores; exit 1 if any file could not be tagged."""
    from catalogue_tagger.models.specs import get_spec
    from catalogue_tagger.predict import predict_files

    settings = settings_with(settings, keep_segments=segments or plot_path is not None, **overrides)
    failed = False
    rows: list[dict[str, Any]] = []
    with user_errors():
        specs = {name: get_spec(name) for name in settings.models}
        for prediction in predict_files(files, settings):
            outcome = prediction.outcome
            if isinstance(outcome, TrackFailure):
                failed = True
                error = {"kind": outcome.kind, "detail": outcome.detail}
                records = [{"path": prediction.path, "model": name, "error": error} for name in specs]
            else:
                if plot_path is not None:
                    from catalogue_tagger.cli.taggram import draw_taggrams

                    draw_taggrams(plot_path, prediction.path, outcome, specs, several=len(files) * len(specs) > 1)
                records = [
                    prediction_json(prediction.path, out, specs[out.model].labels, outcome.duration_s, outcome.flags,
                                    segments=segments, embedding=embedding, descriptors=outcome.descriptors)
                    for out in outcome.outputs
                ]
            for record in records:
                if fmt == "json":
                    echo_json(record)
                else:
                    rows.append(record)
    if fmt == "table":
        print_table(["file", "model", "duration (s)", "segments", "top tags", "tempo · key · loudness", "flags"],
                    [_table_row(r) for r in rows])
    if failed:
        sys.exit(EXIT_SOME_FAILED)


def _table_row(record: dict[str, Any]) -> list[str]:
    if "error" in record:
        error = record["error"]
        return [record["path"], record["model"], "", "", f"{error['kind']}: {error['detail']}", "", ""]
    top = ", ".join(f"{tag} {score:.2f}" for tag, score in record["top"])
    return [record["path"], record["model"], f"{record['duration_s']:.1f}", str(record["n_segments"]), top,
            _descriptors_cell(record.get("descriptors")), ",".join(record["flags"])]


def _descriptors_cell(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    tempo = f"{d['tempo_bpm']:.1f} BPM" if d.get("tempo_bpm") is not None else "no tempo"
    key = f"{d['key']} ({d['camelot']})" if d.get("key") else "no key"
    loudness = f"{d['loudness_lufs']:.1f} LUFS" if d.get("loudness_lufs") is not None else "silent"
    return f"{tempo} · {key} · {loudness}"
