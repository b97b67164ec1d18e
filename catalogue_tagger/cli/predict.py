"""``catalogue-tagger predict FILE... --model NAME``: tags of files, as JSON lines or a table."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

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
@click.option("--model", "models", default="musicnn-mtt", show_default=True, help="Model name(s), comma-separated.")
@click.option("--segments", is_flag=True, help="Include the per-segment scores (the taggram).")
@click.option("--embedding", is_flag=True, help="Include the track embedding (models that have one).")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnx", "tensorrt"]), default="torch", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--max-duration", "max_duration_s", type=float, default=None, help="Decode at most this many seconds.")
def predict(files: tuple[str, ...], models: str, segments: bool, embedding: bool, fmt: str, batch_size: int, backend: str, device: str, max_duration_s: float | None) -> None:
    """Tag FILES with a model and print the track scores (exit 1 if any file could not be tagged)."""
    from catalogue_tagger.models.registry import get_spec
    from catalogue_tagger.predict import predict_files

    names = [m.strip() for m in models.split(",") if m.strip()]
    specs = {name: get_spec(name) for name in names}
    failed = False
    rows: list[dict[str, Any]] = []
    for prediction in predict_files(files, names, batch_size=batch_size, backend=backend, device=device, keep_segments=segments, max_duration_s=max_duration_s):
        outcome = prediction.outcome
        if isinstance(outcome, TrackFailure):
            failed = True
            records = [{"path": prediction.path, "model": name, "error": {"kind": outcome.kind, "detail": outcome.detail}} for name in names]
        else:
            records = [
                prediction_json(prediction.path, out, specs[out.model].labels, outcome.duration_s, outcome.flags, segments=segments, embedding=embedding, descriptors=outcome.descriptors)
                for out in outcome.outputs
            ]
        for record in records:
            if fmt == "json":
                click.echo(json.dumps(record, ensure_ascii=False))
            else:
                rows.append(record)
    if fmt == "table":
        _print_table(rows)
    if failed:
        sys.exit(1)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("file", "model", "duration (s)", "segments", "top tags", "tempo · key · loudness", "flags")
    for r in rows:
        if "error" in r:
            table.add_row(r["path"], r["model"], "", "", f"[red]{r['error']['kind']}[/]: {r['error']['detail']}", "", "")
        else:
            top = ", ".join(f"{tag} {score:.2f}" for tag, score in r["top"])
            table.add_row(r["path"], r["model"], f"{r['duration_s']:.1f}", str(r["n_segments"]), top, _descriptors_cell(r.get("descriptors")), ",".join(r["flags"]))
    Console().print(table)


def _descriptors_cell(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    tempo = f"{d['tempo_bpm']:.1f} BPM" if d.get("tempo_bpm") is not None else "no tempo"
    key = f"{d['key']} ({d['camelot']})" if d.get("key") else "no key"
    loudness = f"{d['loudness_lufs']:.1f} LUFS" if d.get("loudness_lufs") is not None else "silent"
    return f"{tempo} · {key} · {loudness}"
