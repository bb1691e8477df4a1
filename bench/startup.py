"""Start-up of `byenatos serve`: time until the first 200 on /v1/models, and idle RSS.

    .venv/bin/python bench/startup.py [--runs 7]

Targets (issue #2): ready in under 0.5 s; idle RSS under 80 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import subprocess
import sys
import time

import httpx
import psutil

from bench._util import ROOT, env_for, median, start_process, stop_process, temp_home


async def one_run(home, token: str | None = None) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc, line = await start_process(sys.executable, "-m", "app", "serve", "--port", "0", "--no-scan",
                                     env=env_for(home), ready_prefix="ByenatOS gateway on")
    url = line.split()[3]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(trust_env=False, headers=headers) as client:
        r = await client.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {token}"})
        ready = time.perf_counter() - t0
        assert r.status_code == 200, r.text
    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
    await stop_process(proc)
    return ready, rss


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # An installed package ships compiled bytecode (pip and PyInstaller compile it); a checkout
    # run with PYTHONDONTWRITEBYTECODE would otherwise recompile the app's modules every start.
    compileall.compile_dir(ROOT / "app", quiet=1)
    home = temp_home()
    registered = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "app", "apps", "register", "bench"],
                                         env=env_for(home), check=True, capture_output=True, text=True)
    token = registered.stdout.splitlines()[0].strip()  # the gateway wants an app token
    await one_run(home, token)  # warm the OS file cache once
    results = [await one_run(home, token) for _ in range(args.runs)]
    ready = [r[0] for r in results]
    rss = [r[1] for r in results]
    print(f"serve ready (first 200 on /v1/models): median {median(ready) * 1000:.0f} ms "
          f"(min {min(ready) * 1000:.0f}, max {max(ready) * 1000:.0f}, {args.runs} runs)   target < 500 ms")
    print(f"idle RSS after ready: median {median(rss):.1f} MB   target < 80 MB")


if __name__ == "__main__":
    asyncio.run(main())
