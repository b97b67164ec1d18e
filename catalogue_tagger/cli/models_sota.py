"""``catalogue-tagger models convert-sota``: rebuild the weights of Won et al.'s MTAT taggers from their checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from catalogue_tagger.cli.output import CannotRun, user_errors


@click.command("convert-sota")
@click.option("--source", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with {musicnn,fcn,crnn}/best_model.pth and tags.json, e.g. ../shared/weights/sota-mtat.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: the package's weights folder).")
def convert_sota(source: Path, out: Path | None) -> None:
    """Rebuild musicnn-sota-mtt, fcn-mtt and crnn-mtt from sota-music-tagging-models' MTAT checkpoints
    (sha256-pinned, read with torch.load(weights_only=True), nothing downloaded) and check them against the
    registry pins.

    Example: catalogue-tagger models convert-sota --source ../shared/weights/sota-mtat --out /tmp/weights
    """
    from catalogue_tagger.models.specs import SPECS
    from catalogue_tagger.models.sota_convert import WEIGHTS_DIR, convert_sota_weights

    with user_errors():
        manifest = convert_sota_weights(source, out or WEIGHTS_DIR)
    mismatched = []
    for name, entry in manifest.models.items():
        pinned = SPECS[name].weights_sha256
        if entry.sha256 != pinned:
            mismatched.append(name)
        status = "ok" if entry.sha256 == pinned else "DIFFERS from the pinned hash"
        click.echo(f"{name}: {entry.weights_file} sha256 {entry.sha256} {status}")
    if mismatched:
        raise CannotRun(f"converted weights differ from the registry pins: {', '.join(mismatched)}")
