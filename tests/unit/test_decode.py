"""Streamed decode to 16 kHz mono float32: formats, exactness against the librosa contract, named failures."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soxr

from catalogue_tagger.decode import BLOCK_SAMPLES, SAMPLE_RATE, DecodeInfo, decode_all, decode_stream, frame_to_mono
from catalogue_tagger.errors import DecodeError, EmptyAudio, NoAudioStream, UnsupportedFormat

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def raw_samples(path: Path) -> tuple[np.ndarray, int]:
    """All samples as PyAV gives them, (channels, n) in the file's own sample type, and the rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            if not frame.format.is_planar:
                data = data.reshape(-1, frame.layout.nb_channels).T
            frames.append(data)
        return np.concatenate(frames, axis=1), stream.rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """int16 samples, shape (channels, n)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(samples.T).astype("<i2").tobytes())
    return path


@pytest.mark.parametrize(
    ("name", "duration_s", "codec"),
    [
        ("excerpt.mp3", 5.0, "mp3float"),
        ("excerpt.ogg", 5.0, "vorbis"),
        ("excerpt.opus", 5.0, "opus"),
        ("excerpt.m4a", 5.0, "aac"),
        ("excerpt_16k_mono.flac", 4.0, "flac"),
        ("excerpt_0.5s.flac", 0.5, "flac"),
        ("excerpt_0.5s.wav", 0.5, "pcm_s16le"),
        ("excerpt_0.5s.aiff", 0.5, "pcm_s16be"),
    ],
)
def test_every_format_decodes_to_16k_mono(name: str, duration_s: float, codec: str) -> None:
    with (AUDIO / name).open("rb") as fh:
        audio, info = decode_all(fh)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all() and 0.05 < np.abs(audio).max() <= 1.0
    assert info.duration_s == pytest.approx(duration_s, abs=0.03)
    assert info.samples == len(audio) and info.duration_s == len(audio) / SAMPLE_RATE
    assert info.codec == codec
    assert not info.truncated and not info.capped and info.flags == ()


def test_16k_flac_is_bit_identical_to_int16_over_32768() -> None:
    path = AUDIO / "excerpt_16k_mono.flac"
    raw, rate = raw_samples(path)
    assert rate == SAMPLE_RATE and raw.dtype == np.int16
    audio, info = decode_all(path.open("rb"))
    np.testing.assert_array_equal(audio, raw[0].astype(np.float32) / np.float32(32768))
    assert info.source_rate == SAMPLE_RATE and info.channels == 1


def test_stereo_441_matches_one_shot_soxr_hq_of_the_channel_mean() -> None:
    """The librosa.load contract: int16/32768, mean of channels, soxr HQ — streamed equals one-shot."""
    path = AUDIO / "excerpt_0.5s.wav"
    raw, rate = raw_samples(path)
    expected = soxr.resample((raw.astype(np.float32) / 32768).mean(axis=0), rate, SAMPLE_RATE, quality="HQ")
    audio, info = decode_all(path.open("rb"))
    assert info.source_rate == 44100 and info.channels == 2
    assert len(audio) == len(expected)
    assert np.abs(audio - expected).max() < 1e-6


@pytest.mark.parametrize("chunk_s", [0.0371, 1.0, 10.0])
def test_streaming_chunks_equal_one_shot_resampling(tmp_path: Path, chunk_s: float) -> None:
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal((2, 44100 * 12)) * 3000).astype(np.int16)
    path = write_wav(tmp_path / "noise.wav", samples, 44100)
    expected = soxr.resample((samples.astype(np.float32) / 32768).mean(axis=0), 44100, SAMPLE_RATE, quality="HQ")
    with decode_stream(path.open("rb"), chunk_s=chunk_s) as audio:
        chunks = list(audio)
    size = int(round(chunk_s * SAMPLE_RATE))
    assert all(len(chunk) == size for chunk in chunks[:-1]) and 0 < len(chunks[-1]) <= size
    got = np.concatenate(chunks)
    assert len(got) == len(expected)
    assert np.abs(got - expected).max() < 1e-6


def test_max_duration_caps_decoding(tmp_path: Path) -> None:
    samples = (np.sin(np.arange(44100 * 30) * 0.05) * 10000).astype(np.int16)[None, :]
    path = write_wav(tmp_path / "long.wav", samples, 44100)
    with decode_stream(path.open("rb"), max_duration_s=7.5, chunk_s=2.0) as audio:
        chunks = list(audio)
    assert audio.info.capped and not audio.info.truncated and audio.info.flags == ("capped",)
    assert sum(map(len, chunks)) == audio.info.samples
    assert audio.info.duration_s == pytest.approx(7.5, abs=0.01)
    assert audio.info.container_duration_s == pytest.approx(30.0)


def test_cap_longer_than_the_track_is_not_capped() -> None:
    audio, info = decode_all((AUDIO / "excerpt.ogg").open("rb"), max_duration_s=60)
    assert not info.capped and info.duration_s == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("name", ["truncated.ogg", "truncated.mp3"])
def test_truncated_files_decode_what_is_there_and_are_flagged(name: str) -> None:
    audio, info = decode_all((AUDIO / name).open("rb"))
    assert info.truncated and info.flags == ("truncated",)
    assert 0.5 < info.duration_s < 4.0 and np.isfinite(audio).all()


def test_garbage_bytes_are_an_unsupported_format() -> None:
    with pytest.raises(UnsupportedFormat, match="corrupt.mp3") as excinfo:
        decode_stream((AUDIO / "corrupt.mp3").open("rb"))
    assert excinfo.value.kind == "unsupported_format"
    with pytest.raises(DecodeError):  # an empty object: nothing to probe
        decode_stream(io.BytesIO(b""), name="s3://b/empty.mp3")


def test_zero_samples_is_empty_audio() -> None:
    with pytest.raises(EmptyAudio) as excinfo:
        decode_all((AUDIO / "empty.wav").open("rb"))
    assert excinfo.value.kind == "empty_audio"


def test_video_without_audio_is_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "silent-film.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 1)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(NoAudioStream, match="no audio stream") as excinfo:
        decode_stream(path.open("rb"))
    assert excinfo.value.kind == "no_audio_stream"


def test_info_is_known_only_after_reading() -> None:
    audio = decode_stream((AUDIO / "excerpt.mp3").open("rb"))
    assert audio.source_rate == 44100 and audio.codec == "mp3float"
    with pytest.raises(RuntimeError):
        audio.info
    list(audio)
    assert isinstance(audio.info, DecodeInfo)
    audio.close()


@pytest.mark.parametrize("fmt", ["s16", "s16p", "s32", "flt", "fltp", "u8"])
def test_frame_to_mono_scales_and_averages(fmt: str) -> None:
    ints = np.array([[-32768, 0, 16384, 32767], [32767, 0, -16384, 0]], dtype=np.int16)
    left, right = ints.astype(np.float32) / 32768
    data: np.ndarray
    if fmt.startswith("s16"):
        data, expected = ints, (left + right) / 2
    elif fmt == "s32":
        data, expected = ints.astype(np.int32) << 16, (left + right) / 2
    elif fmt == "u8":
        data = ((ints.astype(np.int32) >> 8) + 128).astype(np.uint8)
        expected = ((data.astype(np.float32) - 128) / 128).mean(axis=0)
    else:
        data, expected = ints.astype(np.float32) / 32768, (left + right) / 2
    planar = fmt.endswith("p")
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data if planar else data.T.reshape(1, -1)), format=fmt, layout="stereo"
    )
    np.testing.assert_array_equal(frame_to_mono(frame), expected.astype(np.float32))


def test_streaming_memory_does_not_grow_with_the_track(tmp_path: Path) -> None:
    """60 s at 44.1 kHz: the whole 16 kHz output would be 3.8 MB, full-rate float 10.6 MB; we hold chunks only."""
    import tracemalloc

    samples = (np.random.default_rng(2).standard_normal((1, 44100 * 60)) * 3000).astype(np.int16)
    path = write_wav(tmp_path / "minute.wav", samples, 44100)
    del samples
    tracemalloc.start()
    try:
        with path.open("rb") as fh, decode_stream(fh, chunk_s=1.0) as audio:
            total = sum(len(chunk) for chunk in audio)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == audio.info.samples == 60 * SAMPLE_RATE
    assert peak < 1_500_000


@pytest.mark.parametrize("name", ["excerpt.mp3", "excerpt.ogg", "excerpt.opus", "excerpt.m4a"])
def test_blocks_give_the_samples_of_decoding_frame_by_frame(name: str) -> None:
    """Frames regrouped into 16,384-sample blocks before conversion: bit for bit the 16 kHz samples of resampling
    each codec frame's channel mean as it comes, and the hook sees whole blocks (the last one shorter)."""
    samples, rate = raw_samples(AUDIO / name)
    stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    expected = []
    for start in range(0, samples.shape[1], 1152):  # frame by frame, as a decoder hands them over
        expected.append(stream.resample_chunk(samples[:, start : start + 1152].astype(np.float32).mean(axis=0)))
    expected.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    seen: list[int] = []
    with (AUDIO / name).open("rb") as fh, decode_stream(fh, on_frame=lambda f, s: seen.append(s.shape[1])) as audio:
        decoded = np.concatenate(list(audio))
    np.testing.assert_array_equal(decoded, np.concatenate(expected))
    assert sum(seen) == samples.shape[1] and len(seen) > 1
    assert set(seen[:-1]) == {BLOCK_SAMPLES} and 0 < seen[-1] <= BLOCK_SAMPLES


def test_blocks_end_where_the_format_changes() -> None:
    """A stream whose rate and layout change mid-way (some MP3s and broadcasts do) is regrouped run by run: no
    block mixes two formats, and every sample comes out once, in order."""
    from catalogue_tagger.decode import _blocks, frame_samples

    def frames() -> Iterator[av.AudioFrame]:
        rng = np.random.default_rng(0)
        for rate, layout, channels, n in [(44_100, "stereo", 2, 1000)] * 3 + [(48_000, "mono", 1, 700)] * 2:
            data = rng.uniform(-1, 1, (channels, n)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
            frame.sample_rate = rate
            yield frame

    expected = [frame_samples(f) for f in frames()]
    blocks = list(_blocks(frames(), 1200))
    assert [(b.sample_rate, b.layout.name, b.samples) for b in blocks] == [
        (44_100, "stereo", 1200), (44_100, "stereo", 1200), (44_100, "stereo", 600),
        (48_000, "mono", 1200), (48_000, "mono", 200),
    ]
    got = [frame_samples(b) for b in blocks]
    np.testing.assert_array_equal(np.concatenate(got[:3], axis=1), np.concatenate(expected[:3], axis=1))
    np.testing.assert_array_equal(np.concatenate(got[3:], axis=1), np.concatenate(expected[3:], axis=1))
