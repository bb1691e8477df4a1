"""Helpers shared by the benchmarks: child processes, percentiles, a temporary ByenatOS home."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def temp_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="byenatos-bench-"))


def env_for(home: Path) -> dict[str, str]:
    """A child's environment. PROBE_PATH (a folder) goes first on the child's sys.path: a
    `sitecustomize.py` there can instrument the gateway a benchmark starts."""
    path = os.pathsep.join(p for p in (os.environ.get("PROBE_PATH"), str(ROOT)) if p)
    return {**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": path}


async def start_process(*args: str, env: dict[str, str], ready_prefix: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start a child and return it with the first stdout line that starts with `ready_prefix`."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            raise RuntimeError(f"{args} exited before it was ready")
        if line.startswith(ready_prefix):
            return proc, line.strip()


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


FAKE_UPSTREAM = (
    "import asyncio, sys\n"
    "from tests.fakes.openai_upstream import FakeOpenAI\n"
    "async def main():\n"
    "    fake = await FakeOpenAI().start()\n"
    "    fake.latency = float(sys.argv[1])\n"
    "    print('UPSTREAM', fake.api_base, flush=True)\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)


async def start_fake_upstream(latency_s: float = 0.0) -> tuple[asyncio.subprocess.Process, str]:
    """A fake OpenAI upstream in its own process; returns (process, api_base)."""
    proc, line = await start_process(sys.executable, "-c", FAKE_UPSTREAM, str(latency_s), env=env_for(temp_home()),
                                     ready_prefix="UPSTREAM")
    return proc, line.split()[1]
