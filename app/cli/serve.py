"""`byenatos serve`: the kernel and the gateway, headless, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from app.kernel import heap, runtime_file
from app.kernel.config import Paths
from app.kernel.errors import ConfigError
from app.kernel.gateway.server import GatewayServer
from app.kernel.kernel import Kernel

log = logging.getLogger(__name__)


async def serve(args: argparse.Namespace) -> int:
    # First: a SIGTERM that comes during start-up, or right after the "gateway on" line, must
    # still stop the daemon cleanly (databases closed, runtime file removed).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C arrives as KeyboardInterrupt
            pass
    paths = Paths.default()
    running = await asyncio.to_thread(runtime_file.find, paths)
    if running is not None:  # one kernel per home: two would write the same databases
        raise ConfigError(f"ByenatOS is already running for this home ({running.what}, pid {running.pid}) "
                          f"on {running.url}; use that one, or stop it first")
    kernel = await Kernel(paths).start()
    try:
        server = await GatewayServer(kernel, host=args.host, port=args.port).start()
    except BaseException:
        await kernel.stop()
        raise
    scan = None
    freeze = heap.freeze_when_settled(loop)
    try:
        try:  # before the line below: whoever waits for that line finds the file
            runtime_file.write(kernel.paths, host=server.host, port=server.port, kind="serve")
        except OSError as e:
            log.warning("could not write %s (`byenatos socket` and `doctor` will not find this daemon): %s",
                        kernel.paths.runtime_file, e)
        if server.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"byenatos: warning: listening on {server.host}: other machines on the network can reach "
                  "the gateway", file=sys.stderr)
        print(f"ByenatOS gateway on {server.url}  (OpenAI API: {server.url}/v1)", flush=True)
        scan = None if args.no_scan else asyncio.create_task(_scan(kernel))
        await stop.wait()
    finally:
        freeze.cancel()
        if scan is not None:
            scan.cancel()
        runtime_file.remove(kernel.paths)
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
