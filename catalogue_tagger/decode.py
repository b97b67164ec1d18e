"""Decode any common audio format to 16 kHz mono float32, streamed, with bounded memory.

The model contract is librosa's ``load(path, sr=16000, mono=True)``: integer samples scaled by a power of two
(int16 / 32768, exact), mono as the mean of the channels, then soxr ``HQ`` resampling (``res_type="soxr_hq"``).
We reproduce it chunk by chunk: PyAV decodes frame by frame from a file-like object, an ``av.AudioFifo`` regroups
the frames into blocks of 16,384 samples, each block is made mono float32 and fed to one ``soxr.ResampleStream``,
and fixed-size chunks come out. Audio already at 16 kHz passes through untouched. Memory is a few chunks whatever
the track length, and decoding stops at ``max_duration_s``.

    with decode_stream(fileobj, max_duration_s=900) as audio:
        for chunk in audio:              # float32, shape (chunk_samples,), the last one shorter
            ...
    audio.info                           # DecodeInfo: durations, source format, truncated/capped flags

Failures raise the named errors of :mod:`catalogue_tagger.errors`: :class:`UnsupportedFormat` when the bytes are
not a container we know, :class:`NoAudioStream`, :class:`EmptyAudio` when nothing decodes, :class:`DecodeError`
otherwise. A file that is cut short decodes to what is there and is flagged ``truncated``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

import av
import numpy as np
import numpy.typing as npt
import soxr

from catalogue_tagger.errors import DecodeError, EmptyAudio, NoAudioStream, TaggerError, UnsupportedFormat

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
DEFAULT_CHUNK_S = 10.0
RESAMPLE_QUALITY = "HQ"  # librosa.load's default (soxr_hq); part of the model contract
MAX_CONSECUTIVE_PACKET_ERRORS = 32
#: Source samples (per channel) per block handed on from the decoder (:func:`_blocks`): converted, downmixed,
#: resampled and metered together; per-frame numpy calls cost more than the work.
BLOCK_SAMPLES = 16_384

#: A file is flagged truncated when it decodes to less than this share of its declared duration ...
TRUNCATED_RATIO = 0.98
#: ... and at least this many seconds short (declared durations of short files are rounded).
TRUNCATED_MIN_SHORTFALL_S = 1.0

Waveform = npt.NDArray[np.float32]
#: A decoded frame at the source rate: float32 ``(channels, samples)``.
SourceSamples = npt.NDArray[np.float32]
#: ``on_frame(frame, samples)``: the PyAV frame (rate, layout, time base) and its samples as :func:`frame_samples`.
FrameHook = Callable[[Any, SourceSamples], None]


@dataclass(frozen=True)
class DecodeInfo:
    """What was learnt while decoding one track."""

    duration_s: float  # of the 16 kHz output (after the cap)
    samples: int  # 16 kHz output samples
    container_duration_s: float | None  # as declared by the container/stream, None when unknown
    source_rate: int
    channels: int
    codec: str
    container: str
    truncated: bool  # decoded noticeably less than declared, the stream was cut off, or demuxing failed midway
    capped: bool  # decoding stopped at max_duration_s with audio left
    packet_errors: int = 0  # packets that failed to decode and were skipped

    @property
    def flags(self) -> tuple[str, ...]:
        """The flags to store with the track (``"truncated"``, ``"capped"``)."""
        return tuple(name for name, on in (("truncated", self.truncated), ("capped", self.capped)) if on)


def decode_stream(
    fileobj: IO[bytes],
    *,
    max_duration_s: float | None = None,
    chunk_s: float = DEFAULT_CHUNK_S,
    name: str | None = None,
    on_frame: FrameHook | None = None,
) -> DecodedAudio:
    """Open ``fileobj`` (readable, seekable, binary) for streamed decoding; see :class:`DecodedAudio`.

    Opening already probes the container, so :class:`UnsupportedFormat` and :class:`NoAudioStream` are raised
    here; decoding errors and :class:`EmptyAudio` are raised while iterating. ``name`` (a URI) goes into error
    details; by default the file object's ``uri`` or ``name``. ``on_frame``, when given, sees every block of
    decoded audio (16,384 samples, original channels and rate, before the downmix and resampling), e.g. a
    loudness meter: the PyAV frame and its float32 samples, converted once for both.
    """
    return DecodedAudio(fileobj, max_duration_s=max_duration_s, chunk_s=chunk_s, name=name, on_frame=on_frame)


def decode_all(
    fileobj: IO[bytes], *, max_duration_s: float | None = None, name: str | None = None
) -> tuple[Waveform, DecodeInfo]:
    """The whole (capped) track as one 16 kHz mono float32 array, for callers that need it at once."""
    with decode_stream(fileobj, max_duration_s=max_duration_s, name=name) as audio:
        chunks = list(audio)
    return np.concatenate(chunks), audio.info


class DecodedAudio:
    """An iterator of 16 kHz mono float32 chunks of ``chunk_s`` seconds (the last one shorter).

    ``info`` is available once the iterator is exhausted. Iterate once; close (or use ``with``) to release the
    decoder early. The file object is not closed: it belongs to the caller.
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        *,
        max_duration_s: float | None = None,
        chunk_s: float = DEFAULT_CHUNK_S,
        name: str | None = None,
        on_frame: FrameHook | None = None,
    ) -> None:
        if chunk_s <= 0:
            raise ValueError(f"chunk_s must be positive, got {chunk_s}")
        self.name = name or str(getattr(fileobj, "uri", None) or getattr(fileobj, "name", None) or "<stream>")
        self.max_duration_s = max_duration_s
        self._fileobj = fileobj
        self._on_frame = on_frame
        self._chunk_samples = max(1, int(round(chunk_s * SAMPLE_RATE)))
        self._container, self._stream = self._open()
        self._info: DecodeInfo | None = None
        self._packet_errors = 0
        self._demux_failed = False
        self._chunks = self._generate()

    # -- public -------------------------------------------------------------------------------------
    @property
    def info(self) -> DecodeInfo:
        if self._info is None:
            raise RuntimeError(f"{self.name}: DecodeInfo is known only after the audio has been read")
        return self._info

    @property
    def source_rate(self) -> int:
        return int(self._stream.rate or 0)

    @property
    def codec(self) -> str:
        return str(self._stream.codec_context.name)

    def __iter__(self) -> Iterator[Waveform]:
        return self

    def __next__(self) -> Waveform:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self._container.close()

    def __enter__(self) -> DecodedAudio:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- opening ------------------------------------------------------------------------------------
    def _open(self) -> tuple[Any, Any]:
        try:
            container = av.open(self._fileobj, mode="r", metadata_errors="ignore")
        except TaggerError:
            raise  # the store's own FetchError, raised from inside PyAV's read callback
        except av.error.InvalidDataError as exc:
            raise UnsupportedFormat(f"{self.name}: not a recognised audio container ({exc.strerror})") from exc
        except (av.error.FFmpegError, EOFError) as exc:
            raise DecodeError(f"{self.name}: cannot open: {exc}") from exc
        stream: Any = container.streams.best("audio")
        if stream is None:
            detail = f"{container.format.name} container has no audio stream (streams: {_stream_kinds(container)})"
            container.close()
            raise NoAudioStream(f"{self.name}: {detail}")
        if stream.codec_context is None or not stream.rate:
            detail = f"no decoder for the audio stream of this {container.format.name}"
            container.close()
            raise UnsupportedFormat(f"{self.name}: {detail}")
        return container, stream

    # -- decoding -----------------------------------------------------------------------------------
    def _generate(self) -> Generator[Waveform, None, None]:
        chunker = _Chunker(self._chunk_samples)
        resampler = _Resampler()
        decoded_s = 0.0  # source audio consumed, in seconds
        capped = False
        channels = 0
        frames = _blocks(self._frames(), BLOCK_SAMPLES)
        for frame in frames:
            samples = frame_samples(frame)
            if self._on_frame is not None:
                self._on_frame(frame, samples)
            channels = max(channels, samples.shape[0])
            rate = int(frame.sample_rate)
            if self.max_duration_s is not None:
                # A block ending exactly at the cap lets the loop run once more: room 0 marks it capped.
                room = int(round((self.max_duration_s - decoded_s) * rate))
                if room < samples.shape[1]:
                    capped = True
                    samples = samples[:, : max(room, 0)]
            decoded_s += samples.shape[1] / rate
            yield from chunker.push(resampler.feed(downmix(samples), rate))
            if capped:
                break
        frames.close()
        yield from chunker.push(resampler.flush())
        tail = chunker.rest()
        if tail is not None:
            yield tail
        if chunker.total == 0:
            if self._packet_errors:
                raise DecodeError(f"{self.name}: no packet of the {self.codec} stream could be decoded")
            raise EmptyAudio(f"{self.name}: the {self.codec} stream holds no samples")
        self._info = self._make_info(chunker.total, decoded_s, capped, channels)
        self._container.close()

    def _frames(self) -> Generator[Any, None, None]:
        """Decoded frames; bad packets are skipped (counted), a demuxing failure ends the stream as truncated."""
        consecutive = 0
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except TaggerError:
                raise
            except (av.error.FFmpegError, EOFError) as exc:
                logger.debug("%s: demuxing stopped early: %s", self.name, exc)
                self._demux_failed = True
                return
            try:
                decoded = packet.decode()
            except TaggerError:
                raise
            except (av.error.FFmpegError, ValueError) as exc:
                self._packet_errors += 1
                consecutive += 1
                if consecutive > MAX_CONSECUTIVE_PACKET_ERRORS:
                    raise DecodeError(f"{self.name}: {consecutive} packets in a row failed to decode: {exc}") from exc
                continue
            consecutive = 0
            yield from decoded

    def _make_info(self, samples: int, decoded_s: float, capped: bool, channels: int) -> DecodeInfo:
        declared = self._declared_duration()
        truncated = self._demux_failed
        if not capped and declared is not None:
            short_by = declared - decoded_s
            truncated |= decoded_s < TRUNCATED_RATIO * declared and short_by > TRUNCATED_MIN_SHORTFALL_S
        if not capped and "ogg" in self._container.format.name:
            truncated |= not _ogg_ends_cleanly(self._fileobj)
        if truncated:
            logger.debug("%s: truncated: decoded %.2fs of %s declared", self.name, decoded_s, declared)
        return DecodeInfo(
            duration_s=samples / SAMPLE_RATE,
            samples=samples,
            container_duration_s=declared,
            source_rate=self.source_rate,
            channels=channels or int(self._stream.codec_context.channels or 0),
            codec=self.codec,
            container=str(self._container.format.name),
            truncated=bool(truncated),
            capped=capped,
            packet_errors=self._packet_errors,
        )

    def _declared_duration(self) -> float | None:
        stream = self._stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if self._container.duration:
            return float(self._container.duration) / av.time_base
        return None


def _stream_kinds(container: Any) -> str:
    return ", ".join(str(stream.type) for stream in container.streams) or "none"


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}
_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}


def frame_samples(frame: Any) -> SourceSamples:
    """One PyAV audio frame as float32 ``(channels, samples)``, a copy: integers scaled by a power of two.

    Matches librosa/soundfile: int16 → x / 32768 exactly, float formats unchanged. Planar frames are read plane by
    plane (``frame.to_ndarray`` would stack them through a second copy).
    """
    channels = frame.layout.nb_channels
    fmt = frame.format
    base = fmt.name.rstrip("p")
    if base not in _DTYPES:
        raise DecodeError(f"unexpected sample format {fmt.name}")
    if fmt.is_planar:
        n = frame.samples
        data = np.stack([np.frombuffer(plane, _DTYPES[base], count=n) for plane in frame.planes[:channels]])
    else:
        data = frame.to_ndarray().reshape(-1, channels).T
    if base in ("flt", "dbl"):
        return np.array(data, dtype=np.float32, order="C")  # a copy: it must not share the frame's buffer
    if base == "u8":
        return (data.astype(np.float32) - np.float32(128.0)) * np.float32(1 / 128.0)
    return data.astype(np.float32) * np.float32(1 / _INT_SCALE[base])


def downmix(samples: SourceSamples) -> Waveform:
    """``(channels, samples)`` → mono float32, the mean of the channels (a copy for one channel too)."""
    if samples.shape[0] == 1:
        return np.array(samples[0], dtype=np.float32)
    mono: Waveform = samples.mean(axis=0, dtype=np.float32)
    return mono


def frame_to_mono(frame: Any) -> Waveform:
    """One PyAV audio frame as mono float32: :func:`frame_samples`, then the mean of the channels."""
    return downmix(frame_samples(frame))


class _Resampler:
    """soxr ``HQ`` streaming resampling to 16 kHz; exact passthrough at 16 kHz; restarts if the rate changes."""

    def __init__(self) -> None:
        self._rate = 0
        self._stream: soxr.ResampleStream | None = None

    def feed(self, mono: Waveform, rate: int) -> list[Waveform]:
        out: list[Waveform] = []
        if rate != self._rate:
            out.extend(self.flush())
            self._rate = rate
            if rate != SAMPLE_RATE:
                self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        if self._stream is None:
            out.append(mono)
        elif len(mono):
            out.append(self._stream.resample_chunk(mono))
        return out

    def flush(self) -> list[Waveform]:
        if self._stream is None:
            return []
        tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream = None
        return [tail]


def _blocks(frames: Generator[Any, None, None], size: int) -> Generator[Any, None, None]:
    """Decoded frames regrouped by an ``av.AudioFifo`` into frames of ``size`` samples; the last block of the
    stream, and of each run of one format (sample format, layout, rate), may be shorter. The samples and their
    order are unchanged (soxr's stream and the meters give the same output for any blocking), while what runs
    per frame in Python (the conversion to numpy, the downmix, the meters' calls) runs once per 0.37 s of
    44.1 kHz audio instead of once per codec frame (576–1152 samples): it cost as much as decoding."""
    fifo: Any = None
    signature: tuple[str, str, int] | None = None
    try:
        for frame in frames:
            frame_signature = (str(frame.format.name), str(frame.layout.name), int(frame.sample_rate))
            if frame_signature != signature:
                if fifo is not None and fifo.samples:
                    yield fifo.read()
                fifo, signature = av.AudioFifo(), frame_signature
            frame.pts = None  # the FIFO would otherwise insist that timestamps run without gaps
            fifo.write(frame)
            while fifo.samples >= size:
                yield fifo.read(size)
        if fifo is not None and fifo.samples:
            yield fifo.read()
    finally:
        frames.close()


class _Chunker:
    """Regroups arrays of any length into chunks of exactly ``size`` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.total = 0
        self._parts: list[Waveform] = []
        self._held = 0

    def push(self, arrays: list[Waveform]) -> Iterator[Waveform]:
        for array in arrays:
            if not len(array):
                continue
            self._parts.append(array)
            self._held += len(array)
        while self._held >= self.size:
            joined = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            chunk, rest = joined[: self.size], joined[self.size :]
            self._parts = [rest] if len(rest) else []
            self._held = len(rest)
            self.total += len(chunk)
            yield np.ascontiguousarray(chunk, dtype=np.float32)

    def rest(self) -> Waveform | None:
        if not self._held:
            return None
        tail = np.concatenate(self._parts).astype(np.float32, copy=False)
        self._parts, self._held = [], 0
        self.total += len(tail)
        return tail


_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def _ogg_ends_cleanly(fileobj: IO[bytes]) -> bool:
    """Whether an Ogg file's last page is complete and carries the end-of-stream flag.

    Ogg declares its duration from the last granule position found in the file, so a file cut after any page
    "declares" exactly what it decodes; only the missing end-of-stream page reveals the cut.
    """
    try:
        size = fileobj.seek(0, 2)
        start = max(0, size - _OGG_MAX_PAGE)
        fileobj.seek(start)
        tail = fileobj.read(size - start)
    except (OSError, ValueError, TaggerError):
        return True  # cannot tell; the duration check still applies
    at = tail.rfind(b"OggS")
    if at < 0 or len(tail) - at < 27:
        return False
    header_type, n_segments = tail[at + 5], tail[at + 26]
    body_at = at + 27 + n_segments
    if body_at > len(tail):
        return False
    complete = body_at + sum(tail[at + 27 : body_at]) <= len(tail)
    return complete and bool(header_type & 0x04)
