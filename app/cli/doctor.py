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
    import httpx

    g = kernel.settings.gateway
    url = f"http://{g.host}:{g.port}/api/health"
    try:
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            r = await client.get(url)
        _line(OK if r.status_code == 200 else WARN, f"gateway at {g.host}:{g.port}: answering ({r.status_code})")
    except httpx.HTTPError:
        _line(WARN, f"gateway at {g.host}:{g.port}: not running (start it with `byenatos serve`)")


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
