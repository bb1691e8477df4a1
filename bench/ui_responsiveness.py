"""Is the desktop app's UI responsive while its gateway streams to 50 clients at once?

    .venv/bin/python -m bench.ui_responsiveness [--streams 50] [--rounds 3]

The app (window, tray, kernel, gateway on one qasync loop) runs in this process on the
offscreen platform; a fake OpenAI upstream (20 chunks, 20 ms apart) and the 50 streaming
clients run in child processes, as other apps would. A Qt timer firing every 10 ms records how
late each tick is: the UI's lag. Target (issue #6): p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from bench._util import env_for, percentile, start_process, stop_process, temp_home

UPSTREAM = (
    "import asyncio\n"
    "from tests.fakes.openai_upstream import FakeOpenAI\n"
    "async def main():\n"
    "    fake = await FakeOpenAI().start()\n"
    "    fake.reply_text = ' '.join(['token'] * 20)\n"
    "    fake.chunk_delay = 0.02\n"
    "    print('UPSTREAM', fake.api_base, flush=True)\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)

CLIENTS = (
    "import asyncio, sys, time, aiohttp\n"
    "url, token, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n"
    "async def one(s):\n"
    "    body = {'model': 'default', 'stream': True, 'messages': [{'role': 'user', 'content': 'hi'}]}\n"
    "    async with s.post(url + '/v1/chat/completions', json=body) as r:\n"
    "        assert r.status == 200, await r.text()\n"
    "        chunks = 0\n"
    "        async for line in r.content:\n"
    "            chunks += line.startswith(b'data:')\n"
    "        return chunks\n"
    "async def main():\n"
    "    h = {'Authorization': 'Bearer ' + token}\n"
    "    async with aiohttp.ClientSession(headers=h, connector=aiohttp.TCPConnector(limit=0)) as s:\n"
    "        t = time.perf_counter(); total = 0\n"
    "        for _ in range(rounds):\n"
    "            total += sum(await asyncio.gather(*(one(s) for _ in range(n))))\n"
    "        print('DONE', n * rounds, total, round(time.perf_counter() - t, 2), flush=True)\n"
    "asyncio.run(main())\n"
)


async def run(streams: int, rounds: int) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.main import DesktopApp
    from app.ui.runtime import DesktopRuntime

    upstream, line = await start_process(
        sys.executable, "-c", UPSTREAM, env=env_for(temp_home()), ready_prefix="UPSTREAM"
    )
    api_base = line.split()[1]
    runtime = DesktopRuntime(gateway_port=0)
    app = DesktopApp(QApplication.instance(), runtime, hotkeys=False)
    main = asyncio.ensure_future(app.main(scan=False))
    ready = asyncio.get_running_loop().create_future()
    runtime.gatewayChanged.connect(lambda s: s == "running" and not ready.done() and ready.set_result(None))
    await asyncio.wait_for(ready, 30)
    kernel = runtime.kernel
    await kernel.add_provider("fake", "openai", base_url=api_base)
    await kernel.refresh_provider("fake")
    _info, token = kernel.apps.register("bench-clients", ["chat"])

    lags: list[float] = []
    last = time.perf_counter()

    def tick() -> None:
        nonlocal last
        now = time.perf_counter()
        lags.append(max(0.0, (now - last) * 1000 - 10))
        last = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    await asyncio.sleep(1)  # idle baseline settles (the view refresh after start)
    lags.clear()
    last = time.perf_counter()
    timer.start()
    clients, done = await start_process(
        sys.executable,
        "-c",
        CLIENTS,
        runtime.gateway_url,
        token,
        str(streams),
        str(rounds),
        env=env_for(temp_home()),
        ready_prefix="DONE",
    )
    timer.stop()
    _, n, chunks, seconds = done.split()
    await stop_process(clients)
    print(
        f"{n} streams ({streams} at a time, {rounds} rounds), {chunks} chunks in {seconds} s through the app's gateway"
    )
    print(
        f"UI timer lag while serving: p50 {percentile(lags, 50):.1f} ms, p99 {percentile(lags, 99):.1f} ms, "
        f"max {max(lags):.1f} ms ({len(lags)} ticks)   target p99 < 50 ms"
    )
    app.quit()
    await main
    await stop_process(upstream)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = temp_home()
    os.environ.update(env_for(home))
    from PySide6.QtWidgets import QApplication

    from app.ui.loop import make_loop

    qapp = QApplication(["byenatos-bench"])
    qapp.setQuitOnLastWindowClosed(False)
    loop = make_loop(qapp)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(run(args.streams, args.rounds))


if __name__ == "__main__":
    main()
