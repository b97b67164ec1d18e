"""Postgres persistence: schema and migrations, the :class:`Store`, and the embedded server.

``Store`` loads lazily so ``catalogue-tagger db stop`` does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DiscoverCounts", "Store"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from catalogue_tagger.store import store

        return getattr(store, name)
    raise AttributeError(name)
