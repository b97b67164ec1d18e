"""``catalogue-tagger models``: list the registered taggers, rebuild their weights from the published wheel."""

from __future__ import annotations

from pathlib import Path

import click

from catalogue_tagger.cli.models_sota import convert_sota as convert_sota_command
from catalogue_tagger.cli.output import CannotRun, echo_json, print_table, user_errors


@click.group()
def models() -> None:
    """Registered taggers and their weights."""


@models.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_models(fmt: str) -> None:
    """Name, kind, labels, pinned weights sha256 and published AUCs of every model."""
    from catalogue_tagger.models.specs import list_specs

    specs = list_specs()
    if fmt == "json":
        for spec in specs:
            echo_json({
                "name": spec.name, "kind": spec.kind, "architecture": spec.architecture, "n_labels": spec.n_labels,
                "embedding_size": spec.embedding_size, "default": spec.default,
                "weights_sha256": spec.weights_sha256, "roc_auc": spec.roc_auc, "pr_auc": spec.pr_auc,
                "licence": spec.licence,
            })
        return
    print_table(
        ["name", "kind", "labels", "weights sha256", "ROC-AUC", "PR-AUC", "default"],
        [[spec.name, f"{spec.kind} ({spec.architecture})", spec.n_labels, spec.weights_sha256[:12],
          _auc(spec.roc_auc), _auc(spec.pr_auc), "yes" if spec.default else ""] for spec in specs],
    )


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@models.command("convert")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="musicnn-0.1.0-py3-none-any.whl; downloaded with pip when omitted.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: the package's weights folder).")
def convert(wheel: Path | None, out: Path | None) -> None:
    """Rebuild the musicnn/vgg weights from the musicnn 0.1.0 wheel and check them against the pins."""
    from catalogue_tagger.models.convert import WEIGHTS_DIR, convert_downloading
    from catalogue_tagger.models.specs import SPECS

    with user_errors():
        manifest = convert_downloading(wheel, out or WEIGHTS_DIR)
    mismatched = []
    for name, entry in manifest["models"].items():
        pinned = SPECS[name].weights_sha256
        status = "ok" if entry["sha256"] == pinned else "DIFFERS from the pinned hash"
        if entry["sha256"] != pinned:
            mismatched.append(name)
        click.echo(f"{name}: {entry['weights_file']} sha256 {entry['sha256']} {status}")
    if mismatched:
        raise CannotRun(f"converted weights differ from the registry pins: {', '.join(mismatched)}")


@models.command("train-waveform")
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder written by fetch-debian-music.sh: one sub-folder of audio per training package.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints, best weights, report.json/png.")
@click.option("--epochs", default=30, show_default=True, help="Total epochs (a resumed run counts those done).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/last.pt.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Decoded tracks and teacher taggrams (default: CORPUS/.cache).")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
              help="cosine: decays from --lr to 0 over --epochs, set per epoch.")
@click.option("--seed", default=0, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: forward pass under bfloat16 autocast (for CPUs with AVX512-BF16 or AMX: 2.8x faster than "
                   "fp32 on an AMX CPU).")
@click.option("--crops-per-track", default=0, show_default=True,
              help="At most this many random crops per track and epoch (one per 59049 samples of audio; 0: no cap).")
@click.option("--baseline", is_flag=True, help="Also fit the random-weights baseline once (OUT/baseline.json).")
@click.option("--teachers", default="musicnn-mtt,vgg-mtt", show_default=True,
              help="Comma-separated taggers whose mean sigmoid is the tag target.")
@click.option("--embedding-teacher", default="", help="Also train a projection of the student's feature to predict "
              "this tagger's embedding (e.g. musicnn-mtt, 200-d); the projection becomes the student's embedding.")
@click.option("--embedding-weight", default=1.0, show_default=True,
              help="Weight of the embedding loss (MSE over the teacher embedding's variance) beside the tag BCE.")
@click.option("--tag-loss", type=click.Choice(["bce", "logit"]), default="bce", show_default=True,
              help="bce: cross-entropy on the teachers' mean sigmoids; logit: squared error of the log-odds, over "
                   "their per-tag variance (ranks tags a teacher rules out too).")
@click.option("--dropout", type=float, default=None, help="Dropout before the tag layer while training "
              "(default: SampleCNN's 0.5).")
@click.option("--init", "init_weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start from these SampleCNN weights (safetensors), e.g. the previous version's.")
@click.option("--projection-fit-windows", default=0, show_default=True,
              help="With --embedding-teacher: start a new projection at a least-squares fit on this many windows "
                   "per training track (0: at the teacher's mean embedding).")
@click.option("--held-apart", default="", help="Comma-separated packages kept out of training and validation.")
@click.option("--max-track-s", type=float, default=None, help="Decode only the first seconds of each track.")
@click.option("--mixes", default=0, show_default=True,
              help="Mixtures per training track (it plus another training track 0-6 dB lower), added to the "
                   "training split and labelled by the teachers.")
@click.option("--val-windows-per-track", default=16, show_default=True,
              help="Validation windows per track each epoch (evenly spread; 0: all). The selected weights are "
                   "scored on every window at the end.")
def train_waveform_command(corpus_dir: Path, out_dir: Path, epochs: int, device: str, resume: bool,
                           cache_dir: Path | None, batch_size: int, lr: float, lr_schedule: str, seed: int,
                           precision: str, crops_per_track: int, baseline: bool, teachers: str,
                           embedding_teacher: str, embedding_weight: float, tag_loss: str,
                           dropout: float | None, init_weights: Path | None,
                           projection_fit_windows: int, held_apart: str, max_track_s: float | None, mixes: int,
                           val_windows_per_track: int) -> None:
    """Distil spectrogram taggers into SampleCNN (samplecnn-mtt) on the training corpus.

    Example: catalogue-tagger models train-waveform --corpus corpus/ --out run/ --epochs 30 --resume
    """
    import logging

    from catalogue_tagger.models.specs import get_spec
    from catalogue_tagger.training.progress import TrainingProgress
    from catalogue_tagger.training.run import train_waveform
    from catalogue_tagger.training.train import TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    def names(value: str) -> tuple[str, ...]:
        return tuple(n.strip() for n in value.split(",") if n.strip())

    with user_errors():
        for name in names(teachers) + names(embedding_teacher):
            get_spec(name)  # an unknown tagger is a usage error, before any decoding
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, seed=seed,
                             precision=precision, crops_per_track=crops_per_track, device=device,
                             teachers=names(teachers), embedding_teacher=embedding_teacher,
                             embedding_weight=embedding_weight, tag_loss=tag_loss, dropout=dropout,
                             init_weights=str(init_weights or ""),
                             projection_fit_windows=projection_fit_windows,
                             held_apart=names(held_apart), max_track_s=max_track_s, mixes=mixes,
                             val_windows_per_track=val_windows_per_track)
    with user_errors(), TrainingProgress() as progress:
        report = train_waveform(corpus_dir, out_dir, config, cache_dir=cache_dir, resume=resume,
                                baseline=baseline, hooks=progress)
    if report and report["best_epoch"]:
        best = report["best_epoch"]
        final = report["best_epoch_all_windows"]
        figures = final or best["val"]
        scope = "every validation window" if final else f"up to {config.val_windows_per_track} windows per track"
        click.echo(f"selected epoch {best['epoch']} ({scope}): macro ROC-AUC {figures['macro_roc_auc']:.4f}, "
                   f"median Spearman {figures['median_spearman']:.4f}; accepted: {report['accepted']}; "
                   f"report in {out_dir}")


@models.command("refit-readout")
@click.option("--cache", "cache_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A corpus cache prepared by train-waveform (decoded tracks and teacher outputs).")
@click.option("--weights", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The SampleCNN safetensors whose tag layer is refitted.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where the refitted safetensors go (OUT.json: the chosen ridge and validation figures).")
@click.option("--teachers", default="musicnn-mtt,fcn-mtt", show_default=True,
              help="Comma-separated taggers whose mean sigmoid's log-odds are the targets.")
@click.option("--windows-per-track", default=20, show_default=True,
              help="Training windows per track (evenly spread; 0: all).")
def refit_readout_command(cache_dir: Path, weights: Path, out: Path, teachers: str, windows_per_track: int) -> None:
    """Refit a SampleCNN's tag layer on its frozen features by ridge least squares on the teachers' log-odds.

    Only the 512 -> 50 layer changes (the embedding does not); before and after are scored on every validation
    window against the same teachers.
    """
    import hashlib
    import json

    from catalogue_tagger.models.samplecnn import WINDOW
    from catalogue_tagger.training.corpus import Corpus
    from catalogue_tagger.training.data import TrackSet
    from catalogue_tagger.training.evaluate import evaluate_model
    from catalogue_tagger.training.readout import refit_readout
    from catalogue_tagger.training.train import load_student, save_weights

    with user_errors():
        names = tuple(n.strip() for n in teachers.split(",") if n.strip())
        corpus = Corpus.open(cache_dir)
        model = load_student(weights)
        train_data, val_data = (TrackSet.load(corpus, split, names) for split in ("train", "validation"))
        before = evaluate_model(model, val_data, WINDOW)
        fit = refit_readout(model, train_data, windows_per_track=windows_per_track)
        after = evaluate_model(model, val_data, WINDOW)
        sha256 = save_weights(model, out)
    record = {"from_weights": str(weights), "from_weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
              "teachers": list(names), "weights_sha256": sha256,
              "ridge": fit.ridge, "cv_errors": fit.cv_errors, "train_windows": fit.windows,
              "train_tracks": fit.tracks, "validation_before": before, "validation_after": after}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    click.echo(f"ridge {fit.ridge} on {fit.windows} windows of {fit.tracks} tracks; validation macro ROC-AUC "
               f"{before['macro_roc_auc']:.4f} -> {after['macro_roc_auc']:.4f}, median Spearman "
               f"{before['median_spearman']:.4f} -> {after['median_spearman']:.4f}; wrote {out} (sha256 {sha256})")


# sibling of `convert` for Won et al.'s MTAT checkpoints (its own module: another source, another manifest)
models.add_command(convert_sota_command)
