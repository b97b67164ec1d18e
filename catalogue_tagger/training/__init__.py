"""Training the waveform tagger: corpus cache, teacher targets, SampleCNN training, baseline, evaluation, report."""

from catalogue_tagger.training.baseline import BaselineConfig, random_weights_baseline
from catalogue_tagger.training.corpus import Corpus, CorpusTrack, prepare, split_by_track
from catalogue_tagger.training.evaluate import evaluate_model, prior_scorer, tag_metrics
from catalogue_tagger.training.run import train_waveform
from catalogue_tagger.training.targets import TEACHERS, TrackTargets, compute_targets
from catalogue_tagger.training.train import EpochRecord, TrainConfig, train

__all__ = [
    "TEACHERS", "BaselineConfig", "Corpus", "CorpusTrack", "EpochRecord", "TrackTargets", "TrainConfig",
    "compute_targets", "evaluate_model", "prior_scorer", "prepare", "random_weights_baseline", "split_by_track", "tag_metrics",
    "train", "train_waveform",
]
