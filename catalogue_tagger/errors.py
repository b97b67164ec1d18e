"""Named errors. Each failure kind is a class; ``kind`` is what gets stored against a track.

The pipeline is the one place that turns a :class:`TaggerError` into a ``TrackFailure``.
"""

from __future__ import annotations


class TaggerError(Exception):
    """Base class of every error catalogue-tagger raises on purpose."""

    kind: str = "error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or (self.__doc__ or self.kind).strip())

    @property
    def detail(self) -> str:
        return str(self)


# --- input audio -----------------------------------------------------------------------------------
class DecodeError(TaggerError):
    """The audio could not be decoded."""

    kind = "decode_error"


class UnsupportedFormat(DecodeError):
    """The object is not audio in a format we can decode."""

    kind = "unsupported_format"


class NoAudioStream(DecodeError):
    """The container holds no audio stream."""

    kind = "no_audio_stream"


class DecodeCrash(TaggerError):
    """The decoder crashed on this track (an unexpected error, or its worker process died)."""

    kind = "decode_crash"


class EmptyAudio(DecodeError):
    """The audio stream decoded to zero samples."""

    kind = "empty_audio"


class TooLarge(TaggerError):
    """The object is larger than the configured maximum (``max_bytes``); it was not read."""

    kind = "too_large"


# --- object stores ---------------------------------------------------------------------------------
class FetchError(TaggerError):
    """The object could not be read from its store."""

    kind = "fetch_error"


class SourceError(TaggerError):
    """The source (folder or bucket) cannot be listed."""

    kind = "source_error"


# --- models and inference --------------------------------------------------------------------------
class ModelError(TaggerError):
    """A model could not be loaded or run."""

    kind = "model_error"


class UnknownModel(ModelError):
    """No model of that name is registered."""

    kind = "unknown_model"


class WeightsMismatch(ModelError):
    """Model weights do not match their pinned sha256."""

    kind = "weights_mismatch"


class BackendUnavailable(ModelError):
    """The requested inference backend cannot run on this machine."""

    kind = "backend_unavailable"


class InferenceError(ModelError):
    """A batch failed in the inference backend."""

    kind = "inference_error"


class WriteError(TaggerError):
    """The database refused this track's results (the others of its batch were written)."""

    kind = "write_error"


# --- database --------------------------------------------------------------------------------------
class StoreError(TaggerError):
    """The database could not be reached or refused a statement."""

    kind = "store_error"


class TracksRefused(StoreError):
    """The database refused some tracks of a batch; the others were written."""

    kind = "tracks_refused"

    def __init__(self, refused: list[tuple[int, str, str]]) -> None:
        self.refused = refused  # (track_id, uri, why)
        super().__init__(f"{len(refused)} track(s) could not be written: "
                         + "; ".join(f"{uri}: {why}" for _, uri, why in refused))


class MigrationError(StoreError):
    """A schema migration failed."""

    kind = "migration_error"


class EmbeddedPostgresError(StoreError):
    """The embedded Postgres server could not be started or stopped."""

    kind = "embedded_postgres_error"


# --- runs ------------------------------------------------------------------------------------------
class RunError(TaggerError):
    """The run itself could not proceed."""

    kind = "run_error"


class SettingsError(RunError):
    """A setting (variable or option) has a value catalogue-tagger cannot use."""

    kind = "settings_error"


def failure_of(exc: BaseException, stage: type[TaggerError]) -> tuple[str, str]:
    """The one mapping from an exception to a recorded failure ``(kind, detail)``.

    A :class:`TaggerError` names its own kind; anything else is a crash of ``stage`` (``DecodeCrash``,
    ``InferenceError``, ``WriteError``), its detail the exception's type and message.
    """
    if isinstance(exc, TaggerError):
        return exc.kind, exc.detail
    return stage.kind, f"{type(exc).__name__}: {exc}"


# --- catalogue intelligence ------------------------------------------------------------------------
class UnknownTrack(TaggerError):
    """No such track in the database, or it lacks what the request needs (e.g. an embedding)."""

    kind = "unknown_track"


class LabelsFileError(TaggerError):
    """A labels CSV (uri,label[,value]) could not be read."""

    kind = "labels_file_error"


class TooFewLabels(TaggerError):
    """The labelled sample is too small to train or calibrate anything worth storing."""

    kind = "too_few_labels"


class InvalidQuery(TaggerError):
    """A filter or a plain-words query could not be understood."""

    kind = "invalid_query"
