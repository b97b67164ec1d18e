"""Which taggers to distil from: how each candidate teacher, and each candidate ensemble, agrees with the others.

There are no human labels for the training corpus, so a teacher is judged by how well it predicts the teachers
it is not part of: for each candidate ensemble E (every subset of the candidates with at most all but one of
them), its track means are scored against the mean of the candidates *outside* E, with the metrics the student
is validated with (macro ROC-AUC against that reference's top-3 tags, median per-track Spearman). A teacher whose
errors are its own lowers the agreement of every ensemble that contains it. Also: each candidate against the
mean of all the others (leave one out), and against ``musicnn-mtt`` alone. Run on the validation tracks of a
prepared corpus cache whose taggrams of every candidate are computed (``compute_targets``).

    python benchmarks/teacher_agreement.py --cache CACHE [--teachers musicnn-mtt,vgg-mtt,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from catalogue_tagger.training.corpus import Corpus
from catalogue_tagger.training.evaluate import tag_metrics
from catalogue_tagger.training.targets import TrackTargets

CANDIDATES = ("musicnn-mtt", "vgg-mtt", "musicnn-sota-mtt", "fcn-mtt", "crnn-mtt")


def track_means(corpus: Corpus, teacher: str, split: str) -> np.ndarray:
    """``(tracks, 50)``: the teacher's mean sigmoid over each track of ``split``."""
    return np.stack([TrackTargets.load(corpus, t, (teacher,)).track_mean for t in corpus.split(split)])


def figures(means: dict[str, np.ndarray]) -> dict[str, Any]:
    names = list(means)
    pick = lambda group: np.mean([means[n] for n in group], axis=0)  # noqa: E731
    brief = lambda m: {k: round(m[k], 4) for k in ("macro_roc_auc", "median_spearman")}  # noqa: E731
    leave_one_out = {n: brief(tag_metrics(means[n], pick([o for o in names if o != n]))) for n in names}
    against_musicnn = {n: brief(tag_metrics(means[n], means["musicnn-mtt"])) for n in names if n != "musicnn-mtt"}
    ensembles = []
    for size in range(1, len(names)):
        for group in itertools.combinations(names, size):
            rest = [n for n in names if n not in group]
            ensembles.append({"ensemble": list(group), "reference": rest,
                              **brief(tag_metrics(pick(group), pick(rest)))})
    return {"leave_one_out": leave_one_out, "against_musicnn_mtt": against_musicnn, "ensembles": ensembles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--teachers", default=",".join(CANDIDATES))
    parser.add_argument("--split", default="validation")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    corpus = Corpus.open(args.cache)
    means = {t: track_means(corpus, t, args.split) for t in args.teachers.split(",")}
    result = {"split": args.split, "tracks": len(corpus.split(args.split)),
              "hours": round(corpus.hours(args.split), 3), **figures(means)}
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
