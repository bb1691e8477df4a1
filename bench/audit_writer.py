"""What writing the audit log costs the event loop: the writer thread's time and the GIL it holds.

    .venv/bin/python -m bench.audit_writer [--rows 700] [--runs 3]

Under load the gateway flushes its audit rows every half second from one writer thread (700
rows is about half a second of sequential requests). While the writer runs Python code it holds
the GIL, and the event loop thread waits for it: a ticker thread sleeping 0.5 ms in a loop
measures how late it gets to run, the way a request would. Compared with the same rows
inserted through peewee's `insert_many`, as the audit log did before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict

from app.kernel.security import audit
from app.kernel.store.db import open_database
from app.kernel.store.security_tables import AuditRow


def _peewee_insert(batch: list[audit.AuditEntry]) -> None:
    with AuditRow._meta.database.atomic():
        AuditRow.insert_many([asdict(e) for e in batch]).execute()


def _lag_while(insert, batch: list[audit.AuditEntry]) -> tuple[float, float]:
    """(ms the insert took, worst ms another thread waited to run meanwhile)."""
    lags: list[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            started = time.perf_counter()
            time.sleep(0.0005)
            lags.append((time.perf_counter() - started - 0.0005) * 1000)

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.perf_counter()
    writer = threading.Thread(target=insert, args=(batch,))
    writer.start()
    writer.join()
    took = (time.perf_counter() - started) * 1000
    done.set()
    ticker.join()
    return took, max(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=700)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    open_database(os.path.join(tempfile.mkdtemp(prefix="byenatos-bench-"), "audit.db"))
    batch = [
        audit.AuditEntry(ts=time.time(), app="bench", endpoint="/v1/chat/completions", model="up/gpt-fake-mini",
                         provider="up", stream=False, outcome="ok", prompt_tokens=9, completion_tokens=7, cost=0.0,
                         latency_ms=0.7)
        for _ in range(args.rows)
    ]
    for name, insert in (("audit writer (executemany)", audit._insert), ("peewee insert_many", _peewee_insert)):
        insert(batch)  # warm-up: the first write creates the WAL and pages
        runs = [_lag_while(insert, batch) for _ in range(args.runs)]
        print(f"{name:27s} {args.rows} rows: median {statistics.median(t for t, _ in runs):6.1f} ms, "
              f"another thread waited up to {statistics.median(w for _, w in runs):5.2f} ms (median of {args.runs} runs)")


if __name__ == "__main__":
    main()
