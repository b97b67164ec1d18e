"""musicnn-sota-mtt, fcn-mtt, crnn-mtt against the reference outputs of Won et al.'s PyTorch checkpoints
(tests/fixtures/sota, from ../shared/reference/sota; inputs are the FLACs of tests/fixtures/musicnn)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.sota import SotaTagger, UnrolledGru
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.segment import Windowing, segment_track

FIXTURES = Path(__file__).parents[1] / "fixtures"
CLIPS = sorted(p.stem for p in (FIXTURES / "sota").glob("*.npz"))
# registry name -> key prefix in the reference npz
REFERENCE = {"musicnn-sota-mtt": "musicnn", "fcn-mtt": "fcn", "crnn-mtt": "crnn"}


@cache
def model(name: str) -> SotaTagger:
    tagger = load_model(name)
    assert isinstance(tagger, SotaTagger)
    return tagger


@cache
def reference(clip: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "sota" / f"{clip}.npz") as npz:
        return dict(npz)


@cache
def read_flac(clip: str) -> np.ndarray:
    """Samples as ``int16 / 32768`` in float32, as the reference read them (soundfile, dtype float32)."""
    with av.open(str(FIXTURES / "musicnn" / f"{clip}.flac")) as container:
        frames = [frame.to_ndarray() for frame in container.decode(audio=0)]
    samples = np.concatenate([f.reshape(-1) for f in frames])
    assert samples.dtype == np.int16
    return samples.astype(np.float32) / 32768


def run(name: str, windows: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in model(name)(torch.from_numpy(windows))]


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b).max())


@pytest.mark.parametrize("clip", CLIPS)
def test_fixtures_are_the_reference_inputs(clip: str) -> None:
    ref = reference(clip)
    data = (FIXTURES / "musicnn" / f"{clip}.flac").read_bytes()
    assert hashlib.sha256(data).hexdigest() == str(ref["clip_sha256"])
    assert len(read_flac(clip)) == int(ref["n_samples"])
    assert tuple(str(t) for t in ref["tags"]) == get_spec("fcn-mtt").labels


@pytest.mark.parametrize("clip", CLIPS)
def test_frontend_matches_reference_db_mel(clip: str) -> None:
    """dB mel of the first 3 s window, before ``spec_bn``.

    The reference (torchaudio, float32 FFT) is itself up to ~0.03 dB off a float64 computation in the
    quietest cells (-75 dB and below); the matmul DFT here is as close to float64. Cells within 60 dB of the
    window's peak agree to a few thousandths of a dB.
    """
    ref = reference(clip)["musicnn/logmel_chunk0"]
    wave = read_flac(clip)[:48000]
    window = np.zeros((1, 48000), np.float32)
    window[0, : len(wave)] = wave  # pub_short_2s: zero-padded, as the reference's padded chunk
    with torch.no_grad():
        db = model("musicnn-sota-mtt").frontend.db_mel(torch.from_numpy(window))[0].numpy()
    assert db.shape == ref.shape == (96, 188)
    delta = np.abs(db.astype(np.float64) - ref)
    assert delta.max() <= 0.05 and delta.mean() <= 1e-3
    assert delta[ref > ref.max() - 60].max() <= 5e-3


@pytest.mark.parametrize("name", REFERENCE)
@pytest.mark.parametrize("clip", CLIPS)
def test_segments_and_track_mean_match_reference(name: str, clip: str) -> None:
    """The product's windowing (consecutive windows; one zero-padded window for a short track) reproduces
    the reference's ``consec`` (or ``padded``) chunks, their sigmoids and the track mean."""
    ref, spec = reference(clip), get_spec(name)
    windows, padded = segment_track(read_flac(clip), Windowing(spec.window, spec.hop, spec.pad))
    key = f"{REFERENCE[name]}/{'padded' if padded else 'consec'}"
    assert f"{key}/chunk_sigmoid" in ref
    assert len(windows) == len(ref[f"{key}/chunk_starts"])
    probs, logits, *_ = run(name, windows)
    assert max_abs(probs, ref[f"{key}/chunk_sigmoid"]) <= 1e-4
    assert max_abs(probs.mean(axis=0), ref[f"{key}/track_mean"]) <= 1e-4
    assert max_abs(logits, ref[f"{key}/chunk_logits"]) <= 1e-3


@pytest.mark.parametrize("clip", [c for c in CLIPS if c != "pub_short_2s"])
def test_musicnn_matches_the_repo_evaluation_chunks(clip: str) -> None:
    """The repo's own evaluation: 16 overlapping 3 s chunks, track score their mean sigmoid."""
    ref, wave = reference(clip), read_flac(clip)
    windows = np.stack([wave[s : s + 48000] for s in ref["musicnn/chunk_starts"]])
    probs, *_ = run("musicnn-sota-mtt", windows)
    assert max_abs(probs, ref["musicnn/chunk_sigmoid"]) <= 1e-4
    assert max_abs(probs.mean(axis=0), ref["musicnn/track_mean"]) <= 1e-4


def test_unrolled_gru_is_torch_gru() -> None:
    torch.manual_seed(0)
    reference_gru = torch.nn.GRU(128, 32, 2, batch_first=True).eval()
    unrolled = UnrolledGru(128, 32, 2)
    unrolled.load_state_dict(reference_gru.state_dict(), strict=True)
    x = torch.randn(3, 18, 128)
    with torch.no_grad():
        expected = reference_gru(x)[0][:, -1]
        assert float((unrolled(x) - expected).abs().max()) <= 1e-6


@pytest.mark.parametrize("name", REFERENCE)
def test_batch_invariance_and_finite_outputs(name: str) -> None:
    window = get_spec(name).window
    rng = np.random.default_rng(0)
    batch = np.stack([np.zeros(window), rng.uniform(-1, 1, window), 1e-4 * rng.standard_normal(window)])
    together = run(name, batch.astype(np.float32))
    alone = run(name, batch[1:2].astype(np.float32))
    for a, b in zip(alone, together):
        assert max_abs(a[0], b[1]) <= 1e-5
    for output in together:
        assert np.isfinite(output).all()
