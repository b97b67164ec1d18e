"""Descriptors on synthetic audio with known answers: click tracks at known tempi, chord progressions in known
keys, key names and the Camelot wheel, bounded accumulators, and loudness equal to ffmpeg's own ebur128."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr
import pytest

from catalogue_tagger.decode import decode_stream
from catalogue_tagger.descriptors import DescriptorAnalyzer, Key, UnknownKey, all_keys
from catalogue_tagger.descriptors.key import KeyTracker
from catalogue_tagger.descriptors.tempo import WINDOW_FRAMES, TempoTracker
from synth_audio import SR, click_track, progression  # tests/synth_audio.py

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def push_all(tracker: TempoTracker | KeyTracker, y: np.ndarray, chunk: int = 160_000) -> None:
    for start in range(0, len(y), chunk):
        tracker.push(y[start : start + chunk])


@pytest.mark.parametrize("bpm", [72.0, 100.0, 128.0, 150.0])
def test_click_track_tempo(bpm: float) -> None:
    tracker = TempoTracker()
    push_all(tracker, click_track(bpm))
    estimate = tracker.finish()
    assert estimate is not None
    assert abs(estimate.bpm - bpm) <= 0.02 * bpm
    assert abs(estimate.alt_bpm - bpm) > 0.4 * bpm  # the competing octave is half or double
    assert 0.0 <= estimate.alt_confidence <= estimate.confidence <= 1.0


def test_tempo_does_not_depend_on_chunking() -> None:
    y = click_track(120.0, seconds=20.0)
    results = []
    for chunk in (1_000, 160_000):
        tracker = TempoTracker()
        push_all(tracker, y, chunk)
        results.append(tracker.finish())
    assert results[0] == results[1]


@pytest.mark.parametrize("name", ["D major", "A minor", "F# minor", "Bb major"])
def test_chord_progression_key(name: str) -> None:
    key = Key.parse(name)
    tracker = KeyTracker()
    push_all(tracker, progression(key))
    estimate = tracker.finish()
    assert estimate is not None and estimate.key == key
    assert estimate.alt != key and 0.0 <= estimate.alt_confidence <= estimate.confidence <= 1.0


def test_silence_has_no_tempo_key_or_loudness() -> None:
    analyzer = DescriptorAnalyzer()
    analyzer.push(np.zeros(SR * 10, np.float32))
    d = analyzer.finish()
    assert (d.tempo_bpm, d.key, d.loudness_lufs) == (None, None, None)


def test_accumulators_do_not_grow_with_the_track() -> None:
    sizes = []
    for minutes in (1, 6):
        tempo, key = TempoTracker(), KeyTracker()
        y = click_track(120.0, seconds=60.0)
        for _ in range(minutes):
            push_all(tempo, y)
            push_all(key, y)
        sizes.append((tempo._acf.shape, key._sum.shape))
        assert len(tempo._envelope) < WINDOW_FRAMES and tempo._frames_of.pending < 512 and key._frames_of.pending < 4096
    assert sizes[0] == sizes[1]


def test_key_names_and_camelot_wheel() -> None:
    keys = all_keys()
    assert len({k.camelot for k in keys}) == 24
    assert Key.parse("C major").camelot == "8B" and Key.parse("A minor").camelot == "8A"
    assert Key.parse("Am") == Key.parse("a minor") == Key.parse("8A")
    assert Key.parse("G# minor") == Key.parse("Abm")
    for key in keys:
        assert Key.parse(key.name) == key == Key.parse(key.camelot)
        neighbours = {k.camelot for k in key.compatible()}
        number, letter = int(key.camelot[:-1]), key.camelot[-1]
        wheel = {f"{(number + d - 1) % 12 + 1}{letter}" for d in (-1, 0, 1)}
        assert neighbours == wheel | {f"{number}{'B' if letter == 'A' else 'A'}"}
    with pytest.raises(UnknownKey):
        Key.parse("H minor")


def _ffmpeg_ebur128(path: Path) -> dict[str, float]:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = out[out.rindex("Summary:"):]
    return {k: float(re.search(k + r":\s+(-?[\d.]+)", summary).group(1)) for k in ("I", "LRA", "Peak")}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
@pytest.mark.parametrize("name", ["excerpt.mp3", "excerpt.ogg"])
def test_loudness_equals_ffmpeg_ebur128(name: str) -> None:
    analyzer = DescriptorAnalyzer(name=name)
    with (AUDIO / name).open("rb") as fh, decode_stream(fh, on_frame=analyzer.push_frame) as audio:
        for chunk in audio:
            analyzer.push(chunk)
    d = analyzer.finish()
    reference = _ffmpeg_ebur128(AUDIO / name)  # printed to 0.1
    assert d.loudness_lufs is not None and abs(d.loudness_lufs - reference["I"]) <= 0.06
    assert d.loudness_range_lu is not None and abs(d.loudness_range_lu - reference["LRA"]) <= 0.06
    assert d.true_peak_dbtp is not None and abs(d.true_peak_dbtp - reference["Peak"]) <= 0.06


def test_loudness_sees_the_source_channels_not_the_downmix(tmp_path: Path) -> None:
    """A stereo file with opposite channels downmixes to silence, but its loudness is that of its channels."""
    rate = 48_000
    t = np.arange(rate * 5) / rate
    left = (0.25 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    path = tmp_path / "opposite.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_f32le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([left, -left]).T.reshape(1, -1).copy(), format="flt", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    analyzer = DescriptorAnalyzer()
    with path.open("rb") as fh, decode_stream(fh, on_frame=analyzer.push_frame) as audio:
        for chunk in audio:
            analyzer.push(chunk)
    d = analyzer.finish()
    # BS.1770: a 0 dBFS 997 Hz sine reads -3.01 LUFS on one channel, 0 on two; this one is at -12.04 dBFS.
    assert d.loudness_lufs is not None and abs(d.loudness_lufs - (-12.04)) <= 0.1
    assert d.true_peak_dbtp is not None and abs(d.true_peak_dbtp - 20 * np.log10(0.25)) <= 0.1


def test_true_peak_finds_the_peak_between_samples() -> None:
    """A sine at a quarter of the sample rate, 45° off the samples: every sample reads -3 dB, the wave peaks at 0."""
    from catalogue_tagger.descriptors.loudness import TruePeakMeter

    rate = 48_000
    n = np.arange(rate * 2)
    fade = np.minimum(1.0, n / 4800)  # no abrupt start: its ringing would be a (real) higher true peak
    wave = (0.5 * fade * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)
    meter = TruePeakMeter()
    for start in range(0, len(wave), 1024):
        block = wave[start : start + 1024]
        meter.push(np.stack([block, 0.5 * block]), rate)
    peak = meter.finish()
    assert abs(float(np.abs(wave).max()) - 0.5 / np.sqrt(2)) < 1e-3  # the sample peak: -3 dB below the wave's
    assert abs(20 * np.log10(peak) - 20 * np.log10(0.5)) <= 0.05


def test_frames_of_a_stream_are_the_frames_of_the_whole_signal() -> None:
    import librosa

    from catalogue_tagger.descriptors.frames import FrameStream

    signal = np.random.default_rng(0).standard_normal(20_000).astype(np.float32)
    stream, frames, start = FrameStream(512, 160), [], 0
    for size in (7, 300, 511, 512, 1000, 4096, 13):  # chunks smaller and larger than a frame
        frames.append(stream.push(signal[start : start + size]))
        start += size
    frames.append(stream.push(signal[start:]))
    whole = librosa.util.frame(signal, frame_length=512, hop_length=160).T
    np.testing.assert_array_equal(np.concatenate(frames), whole)
    assert stream.pending < 512


@pytest.mark.parametrize("name", ["excerpt.mp3", "excerpt.ogg"])
def test_true_peak_of_the_stream_is_that_of_the_whole_signal(name: str) -> None:
    """Frames measured in groups, only candidates oversampled: the peak of the whole signal oversampled at once."""
    from catalogue_tagger.decode import frame_samples
    from catalogue_tagger.descriptors.loudness import TruePeakMeter

    meter, frames, rate = TruePeakMeter(), [], 0
    with av.open(str(AUDIO / name)) as container:
        for frame in container.decode(audio=0):
            samples = frame_samples(frame)
            rate = frame.sample_rate
            frames.append(samples)
            meter.push(samples, rate)
    streamed = meter.finish()
    whole = soxr.resample(np.ascontiguousarray(np.concatenate(frames, axis=1).T), rate, 4 * rate, quality="HQ")
    assert len(frames) > 2 * 33  # several groups
    assert abs(20 * np.log10(streamed) - 20 * np.log10(float(np.abs(whole).max()))) <= 0.01


def test_true_peak_does_not_depend_on_how_the_stream_is_cut() -> None:
    """Candidates are fixed 1024-sample sub-blocks of the stream and runs of them are oversampled together: a
    codec's 576-sample frames, odd sizes or whole 16,384-sample blocks give the same peak (to the resampler's
    float rounding, as runs split where measurements end), which is the whole signal's oversampled peak."""
    from catalogue_tagger.decode import frame_samples
    from catalogue_tagger.descriptors.loudness import TruePeakMeter

    with av.open(str(AUDIO / "excerpt.ogg")) as container:
        frames = [frame_samples(frame) for frame in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    signal = np.concatenate(frames, axis=1)
    peaks = []
    for sizes in ([576], [16_384], [1, 700, 5000, 300, 2048]):
        meter, start, i = TruePeakMeter(), 0, 0
        while start < signal.shape[1]:
            size = sizes[i % len(sizes)]
            meter.push(signal[:, start : start + size], rate)
            start, i = start + size, i + 1
        peaks.append(meter.finish())
    whole = float(np.abs(soxr.resample(np.ascontiguousarray(signal.T), rate, 4 * rate, quality="HQ")).max())
    assert peaks[1] == pytest.approx(peaks[0], rel=1e-6) and peaks[2] == pytest.approx(peaks[0], rel=1e-6)
    assert abs(20 * np.log10(peaks[0]) - 20 * np.log10(whole)) <= 0.01


def test_autocorrelate_is_librosas() -> None:
    import librosa

    from catalogue_tagger.descriptors.tempo import autocorrelate

    for n in (1200, 999, 64):
        y = np.random.default_rng(n).standard_normal(n)
        np.testing.assert_array_equal(autocorrelate(y, 801), librosa.autocorrelate(y, max_size=801))


def test_a_decode_worker_measures_descriptors_without_importing_librosa() -> None:
    """librosa, numba and scipy.signal cost a process ~1 s and ~110 MB: the descriptors run without them."""
    code = (
        "import sys, numpy as np\n"
        "import catalogue_tagger.decode_pool\n"
        "from catalogue_tagger.descriptors import DescriptorAnalyzer\n"
        "a = DescriptorAnalyzer(); a.push(np.random.default_rng(0).standard_normal(16000 * 8).astype(np.float32))\n"
        "d = a.finish(); assert d.tempo_bpm is not None and d.key is not None, d\n"
        "print(sorted(m for m in ('librosa', 'numba', 'scipy.signal', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
