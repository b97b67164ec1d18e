"""Windowing equals slicing the reflect-padded whole track, however the samples arrive."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue_tagger.segment import Segmenter, Windowing, segment_chunks

MUSICNN = Windowing(window=48128, hop=47872, pad=256)
SAMPLECNN = Windowing(window=59049, hop=59049, pad=0)


@pytest.mark.parametrize("n_samples", [384_000, 344_000, 47_616, 143_360, 143_359, 100_000])
@pytest.mark.parametrize("chunk", [777, 16_000, 10**7])
def test_musicnn_windows_are_slices_of_the_reflect_padded_track(n_samples: int, chunk: int) -> None:
    y = np.random.default_rng(n_samples).standard_normal(n_samples).astype(np.float32)
    chunks = [y[i : i + chunk] for i in range(0, n_samples, chunk)]
    windows, padded = segment_chunks(chunks, MUSICNN)
    reference = np.pad(y, 256, mode="reflect")
    n = MUSICNN.n_windows(n_samples)
    assert not padded and len(windows) == n
    for k in range(n):
        np.testing.assert_array_equal(windows[k], reference[47872 * k : 47872 * k + 48128])


def test_window_count_matches_musicnn_patch_count() -> None:
    for n_samples in range(40_000, 400_000, 311):
        n_frames = 1 + n_samples // 256
        assert MUSICNN.n_windows(n_samples) == n_frames // 187


@pytest.mark.parametrize("n_samples", [47_615, 16_000, 257, 100, 1])
def test_short_track_is_padded_to_one_window(n_samples: int) -> None:
    y = np.linspace(-0.5, 0.5, n_samples, dtype=np.float32)
    windows, padded = segment_chunks([y], MUSICNN)
    assert padded and windows.shape == (1, 48128)
    np.testing.assert_array_equal(windows[0, 256 : 256 + n_samples], y)
    assert not windows[0, 256 + n_samples :].any()


def test_waveform_windows_without_padding() -> None:
    y = np.random.default_rng(1).standard_normal(59049 * 3 + 5).astype(np.float32)
    windows, padded = segment_chunks(np.array_split(y, 13), SAMPLECNN)
    assert not padded and len(windows) == 3
    np.testing.assert_array_equal(windows[2], y[2 * 59049 : 3 * 59049])


def test_hop_longer_than_window_skips_samples() -> None:
    y = np.arange(1000, dtype=np.float32)
    w = Windowing(window=100, hop=150, pad=0)
    windows, _ = segment_chunks(np.array_split(y, 7), w)
    assert len(windows) == w.n_windows(1000) == 7
    np.testing.assert_array_equal(windows[3], y[450:550])


def test_segmenter_holds_about_one_window() -> None:
    seg = Segmenter(MUSICNN)
    chunk = np.zeros(16_000, np.float32)
    for _ in range(600):  # 10 minutes
        seg.push(chunk)
        assert len(seg._buf) < MUSICNN.window + len(chunk)
