"""``catalogue-tagger models``: list the registered taggers, rebuild their weights from the published wheel."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def models() -> None:
    """Registered taggers and their weights."""


@models.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_models(fmt: str) -> None:
    """Name, kind, labels, pinned weights sha256 and published AUCs of every model."""
    from catalogue_tagger.models.registry import list_specs

    specs = list_specs()
    if fmt == "json":
        for spec in specs:
            row = {
                "name": spec.name, "kind": spec.kind, "architecture": spec.architecture, "n_labels": spec.n_labels,
                "embedding_size": spec.embedding_size, "default": spec.default,
                "weights_sha256": spec.weights_sha256, "roc_auc": spec.roc_auc, "pr_auc": spec.pr_auc,
                "licence": spec.licence,
            }
            click.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "kind", "labels", "weights sha256", "ROC-AUC", "PR-AUC", "default")
    for spec in specs:
        table.add_row(
            spec.name, f"{spec.kind} ({spec.architecture})", str(spec.n_labels), spec.weights_sha256[:12],
            _auc(spec.roc_auc), _auc(spec.pr_auc), "yes" if spec.default else "",
        )
    Console().print(table)


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@models.command("convert")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="musicnn-0.1.0-py3-none-any.whl; downloaded with pip when omitted.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: the package's weights folder).")
def convert(wheel: Path | None, out: Path | None) -> None:
    """Rebuild the musicnn/vgg weights from the musicnn 0.1.0 wheel and check them against the pins."""
    from catalogue_tagger.errors import TaggerError
    from catalogue_tagger.models.convert import WEIGHTS_DIR, convert_downloading
    from catalogue_tagger.models.registry import SPECS

    try:
        manifest = convert_downloading(wheel, out or WEIGHTS_DIR)
    except TaggerError as exc:
        raise click.ClickException(str(exc)) from exc
    mismatched = []
    for name, entry in manifest["models"].items():
        pinned = SPECS[name].weights_sha256
        status = "ok" if entry["sha256"] == pinned else "DIFFERS from the pinned hash"
        if entry["sha256"] != pinned:
            mismatched.append(name)
        click.echo(f"{name}: {entry['weights_file']} sha256 {entry['sha256']} {status}")
    if mismatched:
        raise click.ClickException(f"converted weights differ from the registry pins: {', '.join(mismatched)}")
