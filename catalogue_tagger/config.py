"""Settings, read from the environment (secrets never come from files or arguments' defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

ENV_DATABASE_URL = "CATALOGUE_TAGGER_DATABASE_URL"
ENV_SOURCE = "CATALOGUE_TAGGER_SOURCE"
ENV_MODELS = "CATALOGUE_TAGGER_MODELS"
ENV_HOME = "CATALOGUE_TAGGER_HOME"
ENV_SCHEDULE_RUNNING = "CATALOGUE_TAGGER_SCHEDULE_RUNNING"

DEFAULT_MODELS = ("musicnn-mtt", "samplecnn-mtt")  # the registry specs with default=True


def data_dir() -> Path:
    """Where catalogue-tagger keeps its own state (the embedded Postgres, engine caches).

    ``CATALOGUE_TAGGER_HOME`` wins. As root we stay out of ``/root``: the embedded server runs as an
    unprivileged user and needs to traverse every parent of its data directory.
    """
    if home := os.environ.get(ENV_HOME):
        return Path(home)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/catalogue-tagger")
    return Path(platformdirs.user_data_dir("catalogue-tagger"))


def _split_models(value: str | None) -> tuple[str, ...]:
    if not value:
        return DEFAULT_MODELS
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _flag(name: str, value: str | None) -> bool:
    """An on/off variable: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (unset or empty: off)."""
    text = (value or "").strip().lower()
    if text in {"", "0", "false", "no", "off"}:
        return False
    if text in {"1", "true", "yes", "on"}:
        return True
    raise ValueError(f"{name}={value!r}: expected true or false")


@dataclass(frozen=True)
class Settings:
    """What a run needs to know about its surroundings."""

    database_url: str | None = None  # None: the embedded Postgres
    source: str | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    home: Path = field(default_factory=data_dir)
    schedule_running: bool = False  # the nightly schedule's default state in Dagster (stopped unless set)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get(ENV_DATABASE_URL) or None,
            source=env.get(ENV_SOURCE) or None,
            models=_split_models(env.get(ENV_MODELS)),
            home=Path(env[ENV_HOME]) if env.get(ENV_HOME) else data_dir(),
            schedule_running=_flag(ENV_SCHEDULE_RUNNING, env.get(ENV_SCHEDULE_RUNNING)),
        )
