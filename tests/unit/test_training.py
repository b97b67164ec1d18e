"""Distillation machinery on tiny synthetic data: split, targets, epoch plans, metrics, reproducible and
resumable training, baseline, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from catalogue_tagger.training.baseline import BaselineConfig, random_weights_baseline
from catalogue_tagger.training.corpus import CorpusTrack, split_by_track
from catalogue_tagger.training.data import TrackSet, crop, eval_starts, logit_targets, make_batch, plan_epoch
from catalogue_tagger.training.evaluate import (evaluate_model, evaluate_scorer, prior_scorer, roc_auc, tag_metrics,
                                               top_k_labels)
from catalogue_tagger.training.report import write_report
from catalogue_tagger.training.targets import TrackTargets, WindowMeans
from catalogue_tagger.training.train import (WINDOW, TrainConfig, epoch_lr, fit_projection, initial_student, new_student,
                                             save_weights,
                                             train)

PATCH_HOP, PATCH_PAD = 47872, 256


def synthetic_set(n_tracks: int, seed: int, split: str = "train") -> TrackSet:
    """Tracks of 1-2 windows of noise whose teacher taggrams differ per track."""
    rng = np.random.default_rng(seed)
    tracks, waves, targets = [], [], []
    for i in range(n_tracks):
        samples = int(WINDOW * rng.uniform(1.0, 2.2))
        tracks.append(CorpusTrack(f"pkg/{split}-{i}.ogg", "pkg", samples, split))
        waves.append((0.2 * rng.standard_normal(samples)).astype(np.float16))
        n_patches = (samples + 2 * PATCH_PAD - 48128) // PATCH_HOP + 1
        targets.append(TrackTargets.single(rng.uniform(0, 1, (n_patches, 50)).astype(np.float32), PATCH_HOP, PATCH_PAD))
    return TrackSet(tuple(tracks), tuple(waves), tuple(targets))


@pytest.fixture(scope="module")
def data() -> tuple[TrackSet, TrackSet]:
    return synthetic_set(2, seed=0), synthetic_set(2, seed=1, split="validation")


CONFIG = TrainConfig(epochs=1, batch_size=2, crops_per_track=2, val_windows_per_track=1)


def test_split_is_by_track_stratified_and_seeded() -> None:
    pairs = [(f"{p}/{i}.ogg", p) for p, n in (("a", 10), ("b", 3), ("c", 1)) for i in range(n)]
    split = split_by_track(pairs, 0.2, seed=0)
    assert split == split_by_track(reversed(pairs), 0.2, seed=0) and set(split) == {t for t, _ in pairs}
    val = {p: sum(1 for t, q in pairs if q == p and split[t] == "validation") for p in "abc"}
    assert val == {"a": 2, "b": 1, "c": 0}
    assert split != split_by_track(pairs, 0.2, seed=1)


def test_window_target_is_the_mean_of_overlapping_patches() -> None:
    taggram = np.arange(5 * 50, dtype=np.float32).reshape(5, 50)
    targets = TrackTargets.single(taggram, PATCH_HOP, PATCH_PAD)
    assert targets.patch_range(0, WINDOW) == (0, 2)  # patch 1 starts at 47616 < 59049
    assert targets.patch_range(PATCH_HOP, WINDOW) == (1, 3)
    assert targets.patch_range(PATCH_HOP - 300, 10) == (0, 1)  # ends before patch 1 (starts 256 before its hop)
    assert targets.patch_range(PATCH_HOP - 300, 100) == (0, 2)
    assert targets.patch_range(10**7, WINDOW) == (4, 5)  # beyond the last patch: the last one
    np.testing.assert_allclose(targets.window(PATCH_HOP, WINDOW), taggram[1:3].mean(axis=0))
    np.testing.assert_allclose(targets.track_mean, taggram.mean(axis=0))


def test_epoch_plan_is_seeded_per_epoch_and_crops_stay_inside(data: tuple[TrackSet, TrackSet]) -> None:
    train_set = data[0]
    a, b = plan_epoch(train_set, WINDOW, 0, 3), plan_epoch(train_set, WINDOW, 0, 3)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("track", "start", "gain", "sign"))
    assert not np.array_equal(a.start, plan_epoch(train_set, WINDOW, 0, 4).start)
    lengths = np.array([len(w) for w in train_set.waves])[a.track]
    assert (a.start >= 0).all() and (a.start + WINDOW <= lengths).all()
    assert set(np.unique(a.sign)) <= {-1.0, 1.0} and (a.gain > 0.49).all() and (a.gain < 2.0).all()
    x, y = make_batch(train_set, a, slice(0, 2), WINDOW)
    assert x.shape == (2, WINDOW) and x.dtype == np.float32 and y.shape == (2, 50)
    assert len(plan_epoch(train_set, WINDOW, 0, 0, crops_per_track=1)) == 2


def test_eval_starts_follow_the_segmenter() -> None:
    assert list(eval_starts(3 * WINDOW + 5, WINDOW)) == [0, WINDOW, 2 * WINDOW]
    assert list(eval_starts(100, WINDOW)) == [0]
    assert list(eval_starts(10 * WINDOW, WINDOW, max_windows=3)) == [0, 4 * WINDOW, 9 * WINDOW]  # 4.5 rounds to even


def test_metrics() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([False, False, True, True])
    assert roc_auc(scores, positive) == pytest.approx(0.75)  # 3 of the 4 (pos, neg) pairs ranked right
    teacher = np.random.default_rng(0).uniform(size=(6, 50)).astype(np.float32)
    assert top_k_labels(teacher).sum(axis=1).tolist() == [3] * 6
    assert tag_metrics(teacher, teacher)["median_spearman"] == pytest.approx(1.0)
    assert tag_metrics(top_k_labels(teacher).astype(np.float32), teacher)["macro_roc_auc"] == 1.0
    assert tag_metrics(-teacher, teacher)["median_spearman"] == pytest.approx(-1.0)


def test_prior_reference_ranks_no_track(data: tuple[TrackSet, TrackSet]) -> None:
    metrics = evaluate_scorer(prior_scorer(data[0]), data[1], WINDOW)
    assert metrics["macro_roc_auc"] == 0.5 and metrics["n_windows"] == sum(len(w) // WINDOW for w in data[1].waves)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_data_same_first_epoch_loss(data: tuple[TrackSet, TrackSet], tmp_path: Path,
                                                   precision: str) -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "precision": precision})
    first = train(*data, tmp_path / "a", config)
    second = train(*data, tmp_path / "b", config)
    assert abs(first[0].train_loss - second[0].train_loss) <= 1e-5
    assert first[0].val["loss"] == pytest.approx(second[0].val["loss"], abs=1e-5)
    assert (tmp_path / "a" / "samplecnn-mtt.safetensors").exists() and (tmp_path / "a" / "best.json").exists()


def test_resume_continues_identically(data: tuple[TrackSet, TrackSet], tmp_path: Path) -> None:
    straight = train(*data, tmp_path / "straight", TrainConfig(**{**CONFIG.__dict__, "epochs": 2}))
    train(*data, tmp_path / "resumed", CONFIG)
    torch.manual_seed(123)  # the checkpoint's RNG state, not the caller's, drives the resumed epoch
    resumed = train(*data, tmp_path / "resumed", TrainConfig(**{**CONFIG.__dict__, "epochs": 2}), resume=True)
    assert [r.epoch for r in resumed] == [1, 2]
    assert resumed[1].train_loss == pytest.approx(straight[1].train_loss, abs=1e-6)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_cosine_schedule_decays_per_epoch_and_constant_stays() -> None:
    cosine = TrainConfig(epochs=4, lr=1e-3)
    assert [epoch_lr(cosine, e) for e in range(4)] == pytest.approx([1e-3, 8.5355e-4, 5e-4, 1.4645e-4], rel=1e-4)
    assert epoch_lr(TrainConfig(epochs=4, lr=1e-3, lr_schedule="constant"), 3) == 1e-3
    with pytest.raises(ValueError, match="unknown lr schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="unknown precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown tag loss"):
        TrainConfig(tag_loss="hinge")
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(dropout=1.0)


def test_baseline_and_report(data: tuple[TrackSet, TrackSet], tmp_path: Path) -> None:
    config = BaselineConfig(windows_per_track=1, calibration_windows=2, steps=20, batch_size=2, val_windows_per_track=1)
    baseline = random_weights_baseline(*data, config)
    assert {"loss", "macro_roc_auc", "median_spearman", "train_windows"} <= set(baseline)
    history = train(*data, tmp_path, CONFIG)
    report = write_report(tmp_path, history, corpus={"hours": 0.01}, config={}, baseline=baseline)
    assert json.loads((tmp_path / "report.json").read_text())["best_epoch"]["epoch"] == 1
    assert report["baseline_random_weights"] == baseline and not report["accepted"]
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_teachers_on_different_grids_average_their_own_overlapping_windows() -> None:
    musicnn = np.arange(5 * 50, dtype=np.float32).reshape(5, 50)
    long = np.full((2, 50), 1000.0, dtype=np.float32)
    long[1] = 2000.0
    long_window = 465984  # a 29.1 s teacher: windows of its length, no overlap, no context
    targets = TrackTargets([WindowMeans(musicnn, PATCH_HOP, PATCH_PAD), WindowMeans(long, long_window, 0, long_window)])
    assert targets.taggrams[1].patch_range(0, WINDOW) == (0, 1)
    assert targets.taggrams[1].patch_range(long_window - 10, WINDOW) == (0, 2)  # straddles both long windows
    np.testing.assert_allclose(targets.window(PATCH_HOP, WINDOW), (musicnn[1:3].mean(axis=0) + 1000.0) / 2)
    np.testing.assert_allclose(targets.track_mean, (musicnn.mean(axis=0) + 1500.0) / 2)
    with pytest.raises(ValueError, match="no embedding teacher"):
        targets.embedding_window(0, WINDOW)


def with_embeddings(data: TrackSet, seed: int) -> TrackSet:
    """The same tracks with a 200-d teacher embedding per patch that depends on the audio (its windowed RMS)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((1, 200)).astype(np.float32)
    targets = []
    for wave, target in zip(data.waves, data.targets):
        starts = np.arange(len(target.taggram)) * PATCH_HOP
        rms = np.array([[np.sqrt(np.mean(wave[s : s + PATCH_HOP].astype(np.float32) ** 2))] for s in starts])
        embedding = (10 * rms * mixing + rng.normal(0, 0.01, (len(starts), 200))).astype(np.float32)
        targets.append(TrackTargets(target.taggrams, WindowMeans(embedding, PATCH_HOP, PATCH_PAD)))
    return TrackSet(data.tracks, data.waves, tuple(targets))


def test_embedding_distillation_trains_the_projection_and_resumes_identically(data: tuple[TrackSet, TrackSet],
                                                                               tmp_path: Path) -> None:
    train_set, val_set = with_embeddings(data[0], 0), with_embeddings(data[1], 1)
    config = TrainConfig(**{**CONFIG.__dict__, "embedding_teacher": "musicnn-mtt", "epochs": 2, "crops_per_track": 4})
    straight = train(train_set, val_set, tmp_path / "straight", config)
    assert all({"embedding_loss", "median_embedding_cosine", "objective"} <= set(r.val) for r in straight)
    assert straight[0].val["objective"] == pytest.approx(straight[0].val["loss"] + straight[0].val["embedding_loss"])
    weights = load_file(str(tmp_path / "straight" / "samplecnn-mtt.safetensors"))
    assert weights["net.projection.weight"].shape == (200, 512)
    train(train_set, val_set, tmp_path / "resumed", TrainConfig(**{**config.__dict__, "epochs": 1}))
    resumed = train(train_set, val_set, tmp_path / "resumed", config, resume=True)
    assert resumed[1].train_loss == pytest.approx(straight[1].train_loss, abs=1e-6)
    assert resumed[1].val == pytest.approx(straight[1].val, abs=1e-6)


def test_warm_start_keeps_the_trunk_and_adds_a_projection_at_the_teacher_mean(data: tuple[TrackSet, TrackSet],
                                                                              tmp_path: Path) -> None:
    previous = new_student(7)  # the 512-d student of an earlier version
    save_weights(previous, tmp_path / "old.safetensors")
    train_set = with_embeddings(data[0], 0)
    config = TrainConfig(embedding_teacher="musicnn-mtt", init_weights=str(tmp_path / "old.safetensors"))
    student = initial_student(config, train_set)
    old, new = previous.state_dict(), student.state_dict()
    assert set(new) - set(old) == {"net.projection.weight", "net.projection.bias"} and set(old) <= set(new)
    assert all(torch.equal(old[k], new[k]) for k in old)
    np.testing.assert_array_equal(new["net.projection.bias"].numpy(), train_set.embedding_stats()[0])
    # fitted: the model's own embedding output is the ridge fit, which beats predicting the mean embedding
    fit_config = TrainConfig(**{**config.__dict__, "projection_fit_windows": 2})
    fitted = initial_student(fit_config, train_set)
    loss = fit_projection(fitted, train_set, fit_config)
    rows = [(i, int(s)) for i, w in enumerate(train_set.waves) for s in eval_starts(len(w), WINDOW, 2)]
    with torch.no_grad():
        embedded = fitted(torch.from_numpy(np.stack([crop(train_set.waves[i], s, WINDOW) for i, s in rows])))[2]
    wanted = np.stack([train_set.targets[i].embedding_window(s, WINDOW) for i, s in rows])
    variance = wanted.var(axis=0).mean()
    assert np.mean((embedded.numpy() - wanted) ** 2) / variance == pytest.approx(loss, rel=1e-3)
    assert loss < np.mean((wanted - wanted.mean(axis=0)) ** 2) / variance
    with pytest.raises(ValueError, match="does not fit the student"):  # a projected student into a 512-d one
        initial_student(TrainConfig(init_weights=str(save_projected(tmp_path))), None)
    with pytest.raises(ValueError, match="has no embedding output"):
        TrainConfig(embedding_teacher="vgg-mtt")


def save_projected(tmp_path: Path) -> Path:
    path = tmp_path / "projected.safetensors"
    save_weights(new_student(0, 200), path)
    return path


def test_logit_targets_are_clipped_log_odds() -> None:
    probs = np.array([[0.0, 1e-4, 0.5, 0.9, 1.0]], dtype=np.float32)
    expected = np.log(np.array([1e-3, 1e-3, 0.5, 0.9, 1 - 1e-3]) / (1 - np.array([1e-3, 1e-3, 0.5, 0.9, 1 - 1e-3])))
    np.testing.assert_allclose(logit_targets(probs), [expected], rtol=1e-5)


def test_logit_tag_loss_trains_selects_and_resumes_on_the_log_odds(data: tuple[TrackSet, TrackSet],
                                                                  tmp_path: Path) -> None:
    train_set, val_set = data
    windows = np.stack([t.window(int(s), WINDOW) for t, w in zip(train_set.targets, train_set.waves)
                        for s in eval_starts(len(w), WINDOW)])
    scale = train_set.tag_logit_scale(WINDOW)
    assert scale == pytest.approx(float(np.var(logit_targets(windows).astype(np.float64), axis=0).mean()), rel=1e-9)
    config = TrainConfig(**{**CONFIG.__dict__, "tag_loss": "logit", "dropout": 0.0, "epochs": 2})
    straight = train(train_set, val_set, tmp_path / "straight", config)
    record = straight[-1].val
    assert record["objective"] == record["logit_loss"] != record["loss"]
    # the validation figure is the squared log-odds error over the training targets' variance, computed here apart
    model = new_student(0)
    model.load_state_dict(torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"])
    model.eval()
    rows = [(i, int(s)) for i, w in enumerate(val_set.waves) for s in eval_starts(len(w), WINDOW, 1)]
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([crop(val_set.waves[i], s, WINDOW) for i, s in rows])))[1].double()
    wanted = logit_targets(np.stack([val_set.targets[i].window(s, WINDOW) for i, s in rows]))
    assert record["logit_loss"] == pytest.approx(float(((logits.numpy() - wanted) ** 2).mean()) / scale, rel=1e-4)
    assert evaluate_model(model, val_set, WINDOW, max_windows=1, logit_scale=scale)["logit_loss"] == pytest.approx(
        record["logit_loss"], rel=1e-6)
    train(train_set, val_set, tmp_path / "resumed", TrainConfig(**{**config.__dict__, "epochs": 1}))
    resumed = train(train_set, val_set, tmp_path / "resumed", config, resume=True)
    assert resumed[1].train_loss == pytest.approx(straight[1].train_loss, abs=1e-6)
    assert resumed[1].val == pytest.approx(record, abs=1e-6)


def test_readout_refit_is_the_cross_validated_ridge_on_the_log_odds_and_leaves_the_trunk(
        data: tuple[TrackSet, TrackSet]) -> None:
    from catalogue_tagger.training.readout import refit_readout, ridge_solve, window_features

    train_set = synthetic_set(6, seed=3)
    model = new_student(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit = refit_readout(model, train_set, windows_per_track=2, ridges=(0.1, 10.0), folds=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("net.output."))
    assert fit.tracks == 6 and fit.windows == sum(min(2, len(w) // WINDOW) for w in train_set.waves)
    assert fit.ridge == min((0.1, 10.0), key=lambda r: fit.cv_errors[str(r)])
    # the layer's logits are the standardised-feature ridge solution, computed here apart
    x, y, _ = window_features(model, train_set, 2)
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) == 0, 1.0, x.std(axis=0))
    expected = np.c_[z, np.ones(len(z))] @ ridge_solve(z, y, fit.ridge)
    model.eval()
    with torch.no_grad():
        logits = model.net.output(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(logits, expected, atol=2e-3)
    assert np.mean((logits - y) ** 2) < np.mean((y - y.mean(axis=0)) ** 2)  # it explains some of the targets
