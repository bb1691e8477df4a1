"""The runtime file: how to reach the ByenatOS that runs for this home.

The desktop app and `byenatos serve` write it once their gateway listens and remove it when it
stops (`Paths.runtime_file`, in the user's state dir or `$BYENATOS_HOME/state`):

    {"pid": 1234, "url": "http://127.0.0.1:18484", "host": "127.0.0.1", "port": 18484,
     "kind": "serve", "version": "0.1.0", "started": 1718000000.0}

The CLI (`socket`, `doctor`), a later `byenatos serve` and a second launch of the app find the
running one through it, whatever port it chose. A file left behind by a process that died is
stale and ignored: its pid is gone (or now belongs to a younger process), or nothing at its
address answers /api/health as ByenatOS. The next start overwrites it.

No secrets in it: the CLI reads the admin token from the keyring as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.kernel.config import GatewaySettings, Paths

KINDS = ("app", "serve")
PROBE_TIMEOUT_S = 0.5


@dataclass(frozen=True, slots=True)
class RunningInstance:
    pid: int
    url: str  # where a local client connects (a wildcard bind becomes the loopback address)
    host: str  # what the gateway is bound to
    port: int
    kind: str  # "app" (the desktop app) or "serve" (headless)
    version: str
    started: float  # time.time() when the file was written

    @property
    def what(self) -> str:
        """In words: "the desktop app" or "`byenatos serve`"."""
        return "the desktop app" if self.kind == "app" else "`byenatos serve`"


def local_url(host: str, port: int) -> str:
    """The address a client on this machine uses for a gateway bound to host:port."""
    connect = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{connect}]:{port}" if ":" in connect else f"http://{connect}:{port}"


def write(paths: Paths, *, host: str, port: int, kind: str) -> RunningInstance:
    """Say where this process's gateway listens (replacing what another run left)."""
    from app import version

    assert kind in KINDS, kind
    info = RunningInstance(pid=os.getpid(), url=local_url(host, port), host=host, port=port, kind=kind,
                           version=version(), started=time.time())
    target = paths.runtime_file
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(info), f)
    os.replace(tmp, target)  # readers see the old file or the new one, never half of one
    return info


def remove(paths: Paths) -> None:
    """Remove the file if this process wrote it (a later instance's file stays)."""
    info = _load(paths)
    if info is not None and info.pid == os.getpid():
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: nothing to do
            paths.runtime_file.unlink()


def read(paths: Paths) -> RunningInstance | None:
    """What the file says, if its process still runs; None when there is none, it cannot be read,
    or it is stale (the pid is gone or was reused). Does not ask the gateway: see `find`."""
    info = _load(paths)
    if info is None or not _alive(info):
        return None
    return info


def find(paths: Paths, *, timeout: float = PROBE_TIMEOUT_S) -> RunningInstance | None:
    """The instance running for this home, if its file is fresh and its gateway answers."""
    info = read(paths)
    if info is None or health(info.url, timeout=timeout) is None:
        return None
    return info


async def locate(paths: Paths, settings: GatewaySettings | None = None, *,
                 timeout: float = PROBE_TIMEOUT_S) -> tuple[str, RunningInstance | None] | None:
    """Where the running gateway answers: the runtime file's address, else (a daemon that wrote
    none, e.g. an older version) the address in the settings. (url, what the file says) or None."""
    info = await asyncio.to_thread(find, paths, timeout=timeout)
    if info is not None:
        return info.url, info
    if settings is not None:
        url = local_url(settings.host, settings.port)
        if await asyncio.to_thread(health, url, timeout=timeout) is not None:
            return url, None
    return None


def health(url: str, *, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
    """The /api/health answer of a ByenatOS at `url`, or None (nothing there, or something else)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        return None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", "/api/health", headers={"Host": "127.0.0.1"})
        r = conn.getresponse()
        body = r.read()
        data = json.loads(body) if r.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
    return data if isinstance(data, dict) and data.get("service") == "byenatos" else None


def _load(paths: Paths) -> RunningInstance | None:
    try:
        raw = json.loads(paths.runtime_file.read_text(encoding="utf-8"))
        info = RunningInstance(pid=int(raw["pid"]), url=str(raw["url"]), host=str(raw["host"]),
                               port=int(raw["port"]), kind=str(raw["kind"]), version=str(raw.get("version", "")),
                               started=float(raw["started"]))
    except (OSError, ValueError, KeyError, TypeError):  # none, half-written by hand, or not ours
        return None
    return info


def _alive(info: RunningInstance) -> bool:
    import psutil

    try:
        created = psutil.Process(info.pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, ValueError):
        # AccessDenied: another user's process has this pid now, so not ours either.
        return False
    # A pid reused after a reboot or a crash belongs to a process younger than the file.
    return created <= info.started + 1.0
