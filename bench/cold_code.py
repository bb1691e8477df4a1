"""How much slower code runs after the process has been idle: the cost the gateway's hot path is built around.

    .venv/bin/python -m bench.cold_code [--idle-ms 50] [--rounds 60]

Each step runs `--rounds` times right after a `--idle-ms` sleep (cold), then as many times back
to back (warm); medians of each. On the 2-vCPU development VM a 50 ms sleep makes an empty Python
call ~80x slower and a SHA-256 of a token ~130x: code and data have to come back into the caches
(and their page translations) after the vCPU was away. So on the gateway's critical path every
distinct function, library and object counts, however little it does (docs/dev/pass-through-lane.md).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable

import orjson

from app.kernel.gateway.middleware import host_name

STEPS: dict[str, Callable[[], object]] = {
    "empty Python call": lambda: None,
    "dict.get": lambda: {"a": 1}.get("a"),
    "host_name()": lambda: host_name("127.0.0.1:8484"),
    "orjson.loads": lambda: orjson.loads(b'{"a":1}'),
    "SHA-256 of a token": lambda: hashlib.sha256(b"x" * 47).hexdigest(),
}


def timed(step: Callable[[], object], rounds: int, idle_s: float) -> tuple[float, float]:
    """(cold, warm) medians in microseconds."""
    clock = time.perf_counter_ns
    cold, warm = [], []
    for _ in range(rounds):
        time.sleep(idle_s)  # the idle spell being measured, not a wait for something
        started = clock()
        step()
        cold.append(clock() - started)
    for _ in range(rounds):
        started = clock()
        step()
        warm.append(clock() - started)
    return statistics.median(cold) / 1000, statistics.median(warm) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    print(f"after {args.idle_ms:g} ms idle (cold) and back to back (warm), medians of {args.rounds}:")
    for name, step in STEPS.items():
        cold, warm = timed(step, args.rounds, args.idle_ms / 1000)
        print(f"  {name:20s} cold {cold:7.2f} us   warm {warm:6.2f} us   {cold / warm:5.0f}x")


if __name__ == "__main__":
    main()
