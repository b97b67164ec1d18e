"""A separate process using the Store, for concurrency tests: ``store_worker.py MODE URL [ARGS]``.

``claim URL BATCH``: claim and write until nothing is pending; print the claimed track ids as JSON.
``rewrite URL REVERSED``: write results for every track in batches (reversed order if 1), three times.
"""

from __future__ import annotations

import json
import sys

from store_factories import LABELS, result

from catalogue_tagger.records import TrackTask
from catalogue_tagger.store.store import Store


def main(mode: str, url: str, arg: str) -> None:
    with Store.connect(url) as store:
        store.migrate()
        model_ids = {"m1": store.register_model("m1", "w1", LABELS, "spectrogram", 4)}
        if mode == "claim":
            with store.open_run("worker", ["m1"]) as lease:
                claimed: list[int] = []
                while tasks := store.claim_pending(lease.run_id, int(arg)):
                    claimed += [t.track_id for t in tasks]
                    store.write_results([result(t) for t in tasks], model_ids)
                store.finish_run(lease.run_id, {"tagged": len(claimed)}, "completed")
            print(json.dumps(claimed))
        elif mode == "rewrite":
            with store.connection() as conn:
                from sqlalchemy import text

                rows = conn.execute(text("SELECT track_id, uri FROM tracks ORDER BY track_id")).all()
            tasks = [TrackTask(r.track_id, r.uri) for r in rows]
            if arg == "1":
                tasks.reverse()
            for pass_no in range(3):  # new values each pass, so every write really updates rows
                seed = pass_no * 10 + int(arg)
                for start in range(0, len(tasks), 7):
                    store.write_results([result(t, seed=seed) for t in tasks[start : start + 7]], model_ids)
            print(json.dumps(len(tasks)))


if __name__ == "__main__":
    main(*sys.argv[1:4])
