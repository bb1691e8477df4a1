"""`byenatos doctor`: what is there, what works, what to fix — in plain words."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys

from app import version
from app.kernel.errors import ByenatosError
from app.kernel.kernel import Kernel

OK, WARN, BAD = "✓", "!", "✗"


def _line(mark: str, text: str) -> None:
    print(f" {mark} {text}")


async def doctor(args: argparse.Namespace) -> int:
    problems = 0
    print(f"ByenatOS {version()} on Python {sys.version.split()[0]}")
    try:
        kernel = await Kernel().start()
    except ByenatosError as e:
        _line(BAD, str(e))
        return 1
    try:
        p = kernel.paths
        _line(OK, f"data: {p.data_dir}  settings: {p.settings_file}")
        from app.kernel.store.db import SCHEMA_VERSION

        _line(OK, f"database {p.database} (schema v{SCHEMA_VERSION}, WAL)")
        try:
            mark = WARN if kernel.secrets.is_fallback else OK
            _line(mark, f"secrets: {kernel.secrets.describe()}")
        except ByenatosError as e:
            problems += 1
            _line(BAD, f"secrets: {e}")

        problems += await _providers(kernel)
        try:
            _line(OK, f"default model: {kernel.default_model().id}")
        except ByenatosError as e:
            problems += 1
            _line(BAD, str(e))
        await _gateway(kernel)
        _runtimes()
        print("discovery (not saved; `byenatos models scan` saves it):")
        from app.kernel.models.discovery import discover

        found = await discover(kernel.settings.discovery, kernel.paths)
        for note in found.notes:
            print(f"   {note}")
    finally:
        await kernel.stop()
    if problems:
        print(f"{problems} problem(s) found")
    return 1 if problems else 0


async def _providers(kernel: Kernel) -> int:
    providers = kernel.registry.providers()
    if not providers:
        _line(WARN, "no providers yet: `byenatos models scan` or `byenatos models add openai --key-stdin`")
        return 0
    problems = 0
    models = kernel.list_models()
    healths = await asyncio.gather(*(kernel.provider_health(pr.id) for pr in providers))
    for pr, health in zip(providers, healths, strict=True):
        n = sum(1 for m in models if m.provider == pr.id)
        where = pr.base_url or pr.kind
        if pr.key_source.startswith("env:") and not pr.has_key:
            problems += 1
            _line(BAD, f"provider {pr.id}: its key variable {pr.key_source[4:]} is not set")
        elif health.ok:
            lat = f", {health.latency_ms:.0f} ms" if health.latency_ms is not None else ""
            _line(OK, f"provider {pr.id} ({where}): reachable{lat}, {n} models")
        else:
            problems += 1
            _line(BAD, f"provider {pr.id} ({where}): {health.detail or 'not reachable'}")
    return problems


async def _gateway(kernel: Kernel) -> None:
    """The running gateway for this home, found by its runtime file (any port), else at the
    settings' address; then whether something else holds the settings' port."""
    from app.kernel.runtime_file import health, local_url, locate

    found = await locate(kernel.paths, kernel.settings.gateway, timeout=1.0)
    if found is not None:
        url, info = found
        who = f" ({info.what}, pid {info.pid})" if info is not None else ""
        _line(OK, f"gateway at {url}: running{who}")
        return
    g = kernel.settings.gateway
    url = local_url(g.host, g.port)
    if await asyncio.to_thread(_listening, g.host, g.port) and await asyncio.to_thread(health, url) is None:
        _line(WARN, f"gateway: not running; another program holds {url} (`byenatos serve --port N` picks another)")
    else:
        _line(WARN, "gateway: not running (start it with `byenatos serve`, or open the desktop app)")


def _listening(host: str, port: int) -> bool:
    import socket
    from urllib.parse import urlsplit

    from app.kernel.runtime_file import local_url

    target = urlsplit(local_url(host, port))
    try:
        with socket.create_connection((target.hostname, port), timeout=1.0):
            return True
    except OSError:
        return False


def _runtimes() -> None:
    for module, what, hint in (
        ("llama_cpp", "in-process GGUF runtime (llama-cpp-python)", "install the `local` extra"),
        ("litellm", "long-tail vendors (litellm)", "pip install litellm"),
    ):
        found = importlib.util.find_spec(module) is not None
        _line(OK if found else WARN, f"{what}: {'installed' if found else 'missing — ' + hint}")
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        _line(OK, f"NVIDIA GPUs: {count}")
    except Exception:  # no driver, no GPU, or no library: all mean "CPU only"
        _line(OK, "no NVIDIA GPU found: local models run on the CPU")
