"""What `byenatos serve` imports before it answers: start-up time is a product feature, so the
heavy or unneeded packages must stay off this path (they load when first used)."""

from __future__ import annotations

import json
import subprocess
import sys

STAYS_OFF = (
    "aiohttp",  # the gateway serves with its own httptools server
    "httpx",  # drivers import it when a provider is first used
    "litellm",
    "chromadb",
    "numpy",
    "onnxruntime",
    "llama_cpp",
    "PySide6",
    "cryptography",  # the secrets fallback and the personal store, opened after start-up
    "app.kernel.personal.service",  # built a second after start, or on first use
    "app.kernel.compat.anthropic",  # imported by the first Anthropic request
)

SCRIPT = """
import asyncio, json, sys
from app.cli.main import build_parser
build_parser().parse_args(["serve"])
from app.cli.serve import serve  # what `byenatos serve` imports
from app.kernel.gateway.server import GatewayServer
from app.kernel.kernel import Kernel

async def main():
    kernel = await Kernel().start()
    server = await GatewayServer(kernel, port=0).start()
    loaded = sorted(m for m in sys.modules)
    await server.stop()
    await kernel.stop()
    print(json.dumps(loaded))

asyncio.run(main())
"""


def test_serve_reaches_ready_without_heavy_imports(home):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    heavy = {name for name in STAYS_OFF if name in loaded or any(m.startswith(name + ".") for m in loaded)}
    assert not heavy, f"imported on the way to ready: {sorted(heavy)}"
