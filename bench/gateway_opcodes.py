"""Python work the gateway does per request, counted in bytecodes: a figure noise hardly moves.

    .venv/bin/python -m bench.gateway_opcodes [--requests 200] [--top 25]

Latency on this 2-vCPU VM moves by 2x between runs; the number of bytecodes the gateway's
process executes per request hardly does (~1.5% between runs: timers that happen to fire
while it counts, and how many pieces a stream's events are read in). The gateway runs in this process (on uvloop, as
`serve` does) against a fake OpenAI upstream in another; a client in a third sends sequential
chat completions, non-streaming and then streaming (nine events), and `sys.settrace` counts
every bytecode and Python call on the event loop's thread while they run. Work in C (httptools,
orjson, pydantic-core, the socket calls) is not counted; what is counted is what a leaner
Python path removes. The most expensive functions are listed per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from typing import Any

from bench._util import ROOT, start_fake_upstream, temp_home

CLIENT = """
import asyncio, sys, aiohttp
async def main():
    url, token, n, stream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    body = {"model": "up/gpt-fake-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16,
            "stream": stream}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(n):
            async with s.post(url, json=body, headers={"Authorization": "Bearer " + token}) as r:
                assert r.status == 200, r.status
                await r.read()
asyncio.run(main())
"""


class OpcodeCounter:
    def __init__(self) -> None:
        self.opcodes = 0
        self.calls = 0
        self.by_function: Counter[str] = Counter()

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        self.calls += 1
        frame.f_trace_opcodes = True
        return self._local

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.opcodes += 1
            code = frame.f_code
            self.by_function[f"{_short(code.co_filename)}:{code.co_qualname}"] += 1
        return self._local

    def start(self) -> None:
        sys.settrace(self._global)

    def stop(self) -> None:
        sys.settrace(None)


def _short(path: str) -> str:
    for prefix in (str(ROOT) + "/", "site-packages/", "python3.11/"):
        if prefix in path:
            return path.split(prefix, 1)[1]
    return path


async def run(client_cmd: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(*client_cmd)
    if await proc.wait() != 0:
        raise RuntimeError("the benchmark client failed")


async def measure(requests: int, top: int) -> None:
    os.environ.update(BYENATOS_HOME=str(temp_home()), BYENATOS_SECRETS="file")
    from app.kernel.gateway.server import GatewayServer
    from app.kernel.kernel import Kernel

    upstream, base = await start_fake_upstream(0.0)
    kernel = await Kernel().start()
    try:
        await kernel.add_provider("up", "openai", base_url=base)
        kernel.registry.add_model("up", "gpt-fake-mini")
        _, token = kernel.apps.register("bench", ["chat"])
        gateway = await GatewayServer(kernel, port=0).start()
        url = gateway.url + "/v1/chat/completions"
        for stream in (False, True):
            cmd = [sys.executable, "-c", CLIENT, url, token]
            await run([*cmd, "50", "1" if stream else "0"])  # warm: pools, lazy modules, caches
            await asyncio.sleep(1.5)  # the personal service is built a second after start
            counter = OpcodeCounter()
            counter.start()
            try:
                await run([*cmd, str(requests), "1" if stream else "0"])
            finally:
                counter.stop()
            mode = "stream (9 events)" if stream else "non-stream"
            print(f"{mode}: {counter.opcodes / requests:,.0f} bytecodes and "
                  f"{counter.calls / requests:,.0f} Python calls per request")
            for name, count in counter.by_function.most_common(top):
                print(f"  {count / requests:7,.0f}  {name}")
        await gateway.stop()
    finally:
        await kernel.stop()
        upstream.terminate()
        await upstream.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="functions to list per mode")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(measure(args.requests, args.top))
    else:
        uvloop.run(measure(args.requests, args.top))


if __name__ == "__main__":
    main()
