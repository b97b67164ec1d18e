"""End-to-end cost of the descriptors: the real ``tag`` job over a folder with descriptors off, then on, into
throwaway databases on one Postgres server (alternating, best of ``--repeats``); prints JSON.

    .venv/bin/python benchmarks/descriptors_cost.py FOLDER [--models musicnn-mtt] [--workers 1] [--repeats 2]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import uuid

import psycopg
from psycopg import sql

from catalogue_tagger.config import Settings
from catalogue_tagger.pipeline import tag
from catalogue_tagger.sources import open_source
from catalogue_tagger.store.store import Store


def run(folder: str, admin_url: str, options: Settings) -> float:
    name = f"ct_cost_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        with open_source(folder) as source, Store.connect(url) as store:
            store.migrate()
            report = tag(source, store, options)
        return report.xrealtime
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--models", default="musicnn-mtt")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    best: dict[str, float] = {"off": 0.0, "on": 0.0}
    for _ in range(args.repeats):
        for mode in best:
            options = Settings(models=tuple(args.models.split(",")), workers=args.workers, descriptors=mode == "on")
            best[mode] = max(best[mode], run(args.folder, args.admin_url, options))
    print(json.dumps({"end_to_end_xrealtime_descriptors_off": round(best["off"], 1),
                      "end_to_end_xrealtime_descriptors_on": round(best["on"], 1),
                      "slowdown_pct": round(100 * (best["off"] / best["on"] - 1), 1),
                      "models": args.models, "workers": args.workers}))


if __name__ == "__main__":
    main()
