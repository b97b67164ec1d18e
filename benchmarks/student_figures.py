"""The waveform students' figures for the model card, every one measured here on a prepared corpus cache.

For each student (a name and a SampleCNN safetensors file; its embedding size is read from the file):

1. on every window of the validation tracks (never trained on): macro ROC-AUC and median Spearman against the
   teacher ensemble, and against each teacher alone (:mod:`catalogue_tagger.training.evaluate`);
   (each teacher alone against the ensemble too, for scale);
2. on the held-apart packages (neither trained nor validated on): precision@5 by package and a cross-validated
   logistic regression's accuracy from its track-mean embedding, beside the same figures from the embedding
   teacher's embedding on the same tracks (:mod:`catalogue_tagger.training.embedding_check`).

    python benchmarks/student_figures.py --cache CACHE --teachers musicnn-mtt,vgg-mtt \
        --student v1=OLD.safetensors --student v2=NEW.safetensors [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catalogue_tagger.models.samplecnn import WINDOW
from catalogue_tagger.training.corpus import Corpus
from catalogue_tagger.training.data import TrackSet
from catalogue_tagger.training.embedding_check import embedding_figures
from catalogue_tagger.training.evaluate import score_windows, scores_metrics, tag_metrics, torch_scorer
from catalogue_tagger.training.train import load_student

BRIEF = ("macro_roc_auc", "median_spearman", "mean_spearman", "loss", "n_windows", "n_tracks", "n_tags_scored")


def track_embeddings(model: torch.nn.Module, data: TrackSet, batch_size: int) -> np.ndarray:
    """``(tracks, E)``: the mean of the student's embeddings over each track's non-overlapping windows."""
    scores = score_windows(torch_scorer(model), data, WINDOW, batch_size=batch_size)
    if scores.embeddings is None:
        raise ValueError("the student has no embedding output")
    track_of = scores.track_of
    return np.stack([scores.embeddings[track_of == i].astype(np.float64).mean(axis=0) for i in range(len(data))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--teachers", required=True, help="the ensemble, comma-separated")
    parser.add_argument("--embedding-teacher", default="musicnn-mtt")
    parser.add_argument("--student", action="append", required=True, help="NAME=PATH (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    corpus = Corpus.open(args.cache)
    teachers = tuple(args.teachers.split(","))
    embedding_teacher = args.embedding_teacher
    val = {"ensemble": TrackSet.load(corpus, "validation", teachers, embedding_teacher)}
    val |= {t: TrackSet.load(corpus, "validation", (t,)) for t in dict.fromkeys((*teachers, embedding_teacher))}
    scale = TrackSet.load(corpus, "train", teachers, embedding_teacher).embedding_stats()[1]
    held = TrackSet.load(corpus, "held_apart", (embedding_teacher,), embedding_teacher)
    labels = [t.package for t in held.tracks]
    teacher_embeddings = np.stack([t.embedding.mean for t in held.targets if t.embedding is not None])
    result: dict[str, Any] = {
        "teachers": list(teachers), "embedding_teacher": embedding_teacher,
        "validation": {"tracks": len(val["ensemble"]), "hours": round(corpus.hours("validation"), 3)},
        "held_apart": {"packages": sorted(set(labels)), "tracks": len(labels),
                       "hours": round(corpus.hours("held_apart"), 3),
                       embedding_teacher: embedding_figures(teacher_embeddings, labels)},
        "teacher_alone_vs_ensemble": {
            t: {k: v for k, v in tag_metrics(np.stack([x.track_mean for x in val[t].targets]),
                                             np.stack([x.track_mean for x in val["ensemble"].targets])).items()
                if k in BRIEF}
            for t in teachers
        },
        "students": {},
    }
    for spec in args.student:
        name, path = spec.split("=", 1)
        model = load_student(Path(path))
        started = time.perf_counter()
        scores = score_windows(torch_scorer(model), val["ensemble"], WINDOW, batch_size=args.batch_size)
        record: dict[str, Any] = {"weights": path, "validation": {}}
        for target, data in val.items():
            metrics = scores_metrics(scores, data, WINDOW, scale if target == "ensemble" else None)
            record["validation"][target] = {k: v for k, v in metrics.items() if k in BRIEF or "embedding" in k}
        record["held_apart"] = embedding_figures(track_embeddings(model, held, args.batch_size), labels)
        record["seconds"] = round(time.perf_counter() - started, 1)
        result["students"][name] = record
        print(json.dumps({name: record}), flush=True)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
