"""Stress the app's loop setup: the gateway's HTTP server on the qasync loop taking HTTP load while a
worker thread completes futures into the loop, for a bounded time.

Run as a script (`python -m tests.ui.qasync_stress SECONDS`) so that a crash in the binding
(PySide6 6.12.0 aborts the interpreter here within seconds) fails the calling test instead of
killing the test run. Prints one JSON line with what it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


async def stress(seconds: float) -> dict[str, float]:
    import socket

    import aiohttp

    from app.kernel.gateway import web
    from app.kernel.gateway.http_server import HttpServer

    loop = asyncio.get_running_loop()
    app = web.Application()

    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/", hello)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = HttpServer(app)
    await server.start(sock)
    port = sock.getsockname()[1]

    done = threading.Event()
    completed = 0
    outbox: queue.SimpleQueue[asyncio.Future[int]] = queue.SimpleQueue()

    def worker() -> None:
        # What pynput's listener and llama.cpp's worker threads do: hand results to the loop.
        n = 0
        while not done.is_set():
            try:
                fut = outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            loop.call_soon_threadsafe(_resolve, fut, n)
            n += 1

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()

    async def producer() -> None:
        nonlocal completed
        while not done.is_set():
            batch = [loop.create_future() for _ in range(32)]
            for fut in batch:
                outbox.put(fut)
            for fut in batch:
                try:
                    await asyncio.wait_for(fut, 2)
                except TimeoutError:
                    return  # the worker stopped: the run is over
                completed += 1

    requests = 0
    lags: list[float] = []

    async def client() -> None:
        nonlocal requests
        async with aiohttp.ClientSession() as session:
            while not done.is_set():
                async with session.get(f"http://127.0.0.1:{port}/") as r:
                    await r.read()
                requests += 1

    async def ticker() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000)

    tasks = [asyncio.create_task(c) for c in (producer(), ticker(), *(client() for _ in range(8)))]
    await asyncio.sleep(seconds)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    thread.join(5)
    await server.close()
    lags.sort()
    return {
        "requests": requests,
        "futures": completed,
        "seconds": seconds,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] if lags else 0.0,
    }


def _resolve(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from app.ui.loop import make_loop

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    app = QApplication([])
    loop = make_loop(app)
    asyncio.set_event_loop(loop)
    with loop:
        result = loop.run_until_complete(stress(seconds))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
