"""`byenatos serve`: the kernel and the gateway, headless, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from app.kernel import heap
from app.kernel.gateway.server import GatewayServer
from app.kernel.kernel import Kernel

log = logging.getLogger(__name__)


async def serve(args: argparse.Namespace) -> int:
    kernel = await Kernel().start()
    try:
        server = await GatewayServer(kernel, host=args.host, port=args.port).start()
    except BaseException:
        await kernel.stop()
        raise
    if server.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"byenatos: warning: listening on {server.host}: other machines on the network can reach the gateway",
              file=sys.stderr)
    print(f"ByenatOS gateway on {server.url}  (OpenAI API: {server.url}/v1)", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C arrives as KeyboardInterrupt
            pass
    scan = None if args.no_scan else asyncio.create_task(_scan(kernel))
    freeze = heap.freeze_when_settled(loop)
    try:
        await stop.wait()
    finally:
        freeze.cancel()
        if scan is not None:
            scan.cancel()
        await server.stop()
        await kernel.stop()
    return 0


async def _scan(kernel: Kernel) -> None:
    """Find models in the background: the gateway answers while this runs."""
    try:
        report = await kernel.scan()
    except Exception:  # a broken scan must not take the daemon down
        log.exception("model scan failed")
        return
    print(f"found {report.models} models from {len(set(report.providers))} providers", flush=True)
