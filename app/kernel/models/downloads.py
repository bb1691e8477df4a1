"""Model downloads (GGUF files from Hugging Face or any HTTP URL): resumable, verified, pausable.

A download streams into `<name>.part` beside its destination with httpx. Pausing cancels the
transfer but keeps the part file; resuming asks for the rest with an HTTP Range request
(and starts over if the server ignores it). The SHA-256 is computed while writing (a
resumed download first re-hashes what it already has) and checked against the expected
digest — Hugging Face publishes it as the LFS object id — before the file is renamed into
place. No connection at all is reported as "offline", with the part file kept for later.
Progress is published on the kernel's event bus as `DownloadProgress` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import itertools
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from app.kernel.errors import (
    BadRequestError,
    ByenatosError,
    NotFoundError,
    UpstreamUnavailableError,
    UpstreamUnreachableError,
)
from app.kernel.events import Event

if TYPE_CHECKING:
    import httpx

    from app.kernel.events import EventBus

log = logging.getLogger(__name__)

HF_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20  # bytes per write; progress events are throttled separately
PROGRESS_EVERY = 0.25  # seconds between progress events while running
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
_FILE = re.compile(r"^[\w./ -]+\.gguf$", re.IGNORECASE)


class OfflineError(UpstreamUnreachableError):
    """No connection to the download server at all (as opposed to an error answer)."""

    code = "offline"


class ChecksumError(ByenatosError):
    status = 502
    code = "checksum_mismatch"


class DownloadState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class DownloadProgress(Event):
    id: str
    filename: str
    state: str
    received: int
    total: int | None
    bytes_per_second: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")


def hf_file_url(repo: str, filename: str, revision: str = "main", endpoint: str | None = None) -> str:
    return f"{endpoint or hf_endpoint()}/{repo}/resolve/{quote(revision)}/{quote(filename)}"


async def hf_gguf_files(
    client: httpx.AsyncClient, repo: str, revision: str = "main", endpoint: str | None = None
) -> list[RemoteFile]:
    """The GGUF files of a Hugging Face model repo, with sizes and SHA-256 (from the LFS pointers)."""
    import httpx

    if not _REPO.match(repo):
        raise BadRequestError(f"{repo!r} is not a Hugging Face repo id (write it as owner/name)")
    base = endpoint or hf_endpoint()
    try:
        r = await client.get(f"{base}/api/models/{repo}/tree/{quote(revision)}", params={"recursive": "1"})
    except httpx.TransportError as e:
        raise OfflineError(f"cannot reach {base} — you seem to be offline ({type(e).__name__})") from None
    if r.status_code in (401, 404):
        raise NotFoundError(f"no public model repo {repo!r} on {base}")
    if r.status_code >= 400:
        raise UpstreamUnavailableError(f"{base} answered {r.status_code} listing {repo}")
    files = []
    for entry in r.json():
        path = entry.get("path", "")
        if entry.get("type") == "file" and path.lower().endswith(".gguf"):
            lfs = entry.get("lfs") or {}
            files.append(
                RemoteFile(
                    url=hf_file_url(repo, path, revision, base),
                    filename=path.rsplit("/", 1)[-1],
                    size=lfs.get("size") or entry.get("size"),
                    sha256=lfs.get("oid"),
                )
            )
    return files


class Download:
    """One file on its way to disk. Drive it with `start()`, `pause()`, `resume()`, `cancel()`."""

    _ids = itertools.count(1)

    def __init__(
        self, remote: RemoteFile, dest: Path, *, client: httpx.AsyncClient, events: EventBus | None = None
    ) -> None:
        self.id = f"dl-{next(self._ids)}"
        self.remote = remote
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.client = client
        self.events = events
        self.state = DownloadState.QUEUED
        self.received = self.part.stat().st_size if self.part.exists() else 0
        self.total = remote.size
        self.error = ""
        self.requests: list[dict[str, str]] = []  # headers of each HTTP request (for the UI and tests)
        self._task: asyncio.Task[None] | None = None
        self._rate = 0.0
        self._last_event = 0.0
        self._trailing: asyncio.TimerHandle | None = None
        self.finished = asyncio.Event()  # set on DONE, FAILED or CANCELLED (not on pause)

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> Download:
        if self._task is None or self._task.done():
            self.finished.clear()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"download {self.remote.filename}"
            )
        return self

    resume = start

    async def pause(self) -> None:
        """Stop transferring; the part file stays for `resume()`."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._set(DownloadState.PAUSED)

    async def cancel(self) -> None:
        """Stop and delete what was downloaded."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.part.unlink(missing_ok=True)
        self.received = 0
        self._set(DownloadState.CANCELLED)
        self.finished.set()

    async def wait(self) -> DownloadState:
        await self.finished.wait()
        return self.state

    @property
    def fraction(self) -> float | None:
        return self.received / self.total if self.total else None

    # -- the transfer ------------------------------------------------------------------------------
    async def _run(self) -> None:
        import httpx

        self.error = ""
        self._set(DownloadState.RUNNING)
        try:
            await self._transfer(httpx)
            await self._verify_and_place()
        except asyncio.CancelledError:
            raise
        except ByenatosError as e:
            self._fail(str(e))
        except httpx.TransportError as e:
            self._fail(
                str(
                    OfflineError(
                        f"the connection to {httpx.URL(self.remote.url).host} was lost ({type(e).__name__}); "
                        "you may be offline — resume when the connection is back"
                    )
                )
            )
        except OSError as e:
            self._fail(f"cannot write {self.part}: {e.strerror or e}")

    async def _transfer(self, httpx: Any) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        have = self.part.stat().st_size if self.part.exists() else 0
        if self.total is not None and have > self.total:
            self.part.unlink()
            have = 0
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        self.requests.append(dict(headers))
        host = httpx.URL(self.remote.url).host
        try:
            async with self.client.stream(
                "GET", self.remote.url, headers=headers, follow_redirects=True
            ) as r:
                if r.status_code == 416 and have:  # nothing left: the part is already whole
                    self.received = have
                    return
                if r.status_code == 404:
                    raise NotFoundError(f"{self.remote.filename} is not on the server (404)")
                if r.status_code in (401, 403):
                    raise UpstreamUnavailableError(
                        f"the server refused {self.remote.filename} ({r.status_code}): the repo may be gated"
                    )
                if r.status_code >= 400:
                    raise UpstreamUnavailableError(
                        f"the server answered {r.status_code} for {self.remote.filename}"
                    )
                mode = "ab"
                if r.status_code != 206:  # no resume support: start over
                    have, mode = 0, "wb"
                length = r.headers.get("Content-Length")
                if length is not None and length.isdigit():
                    self.total = have + int(length)
                self.received = have
                started, base = time.monotonic(), have
                # Page-cache writes of network-sized chunks are microseconds; the fsync goes to a thread.
                with open(self.part, mode) as fh:  # noqa: ASYNC230
                    async for chunk in r.aiter_bytes():  # as received: progress must not wait for 1 MB
                        fh.write(chunk)
                        self.received += len(chunk)
                        elapsed = time.monotonic() - started
                        self._rate = (self.received - base) / elapsed if elapsed > 0 else 0.0
                        self._progress()
                    fh.flush()
                    await asyncio.to_thread(os.fsync, fh.fileno())
        except httpx.ConnectError:
            raise OfflineError(
                f"cannot reach {host} — you seem to be offline; "
                "the download resumes where it stopped when you try again"
            ) from None

    async def _verify_and_place(self) -> None:
        if self.total is not None and self.received < self.total:
            raise UpstreamUnavailableError(
                f"the server ended the transfer early ({self.received} of {self.total} bytes); resume to continue"
            )
        self._set(DownloadState.VERIFYING)
        if self.remote.sha256:
            digest = await asyncio.to_thread(_sha256, self.part)
            if digest != self.remote.sha256.lower():
                self.part.unlink(missing_ok=True)
                self.received = 0
                raise ChecksumError(
                    f"{self.remote.filename} failed its checksum (got {digest[:12]}…, expected "
                    f"{self.remote.sha256[:12]}…): the damaged file was deleted, download it again"
                )
        os.replace(self.part, self.dest)
        self._set(DownloadState.DONE)
        self.finished.set()

    # -- reporting ----------------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        self.error = message
        self._set(DownloadState.FAILED)
        self.finished.set()

    def _set(self, state: DownloadState) -> None:
        self.state = state
        self._publish()

    def _progress(self) -> None:
        wait = PROGRESS_EVERY - (time.monotonic() - self._last_event)
        if wait <= 0:
            self._publish()
        elif self._trailing is None:
            # Throttled, but the latest count still goes out: a stalled transfer shows where it stalled.
            self._trailing = asyncio.get_running_loop().call_later(wait, self._publish)

    def _publish(self) -> None:
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None
        self._last_event = time.monotonic()
        if self.events is not None:
            self.events.publish(
                DownloadProgress(
                    id=self.id,
                    filename=self.remote.filename,
                    state=self.state.value,
                    received=self.received,
                    total=self.total,
                    bytes_per_second=self._rate,
                    error=self.error,
                )
            )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class Downloads:
    """The downloads of this session, into the models folder discovery already scans."""

    def __init__(
        self, models_dir: Path, events: EventBus | None = None, *, endpoint: str | None = None
    ) -> None:
        self.models_dir = models_dir
        self.events = events
        self.endpoint = endpoint
        self.items: dict[str, Download] = {}
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            # No overall timeout (files are GBs); a stalled connection still fails after 60 s of silence.
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        return self._client

    async def list_repo(self, repo: str, revision: str = "main") -> list[RemoteFile]:
        return await hf_gguf_files(self.client, repo, revision, self.endpoint)

    def start(self, remote: RemoteFile) -> Download:
        name = Path(remote.filename).name
        if not _FILE.match(name) or name.startswith("."):
            raise BadRequestError(f"{remote.filename!r} is not a .gguf file name")
        for d in self.items.values():
            if d.remote.url == remote.url and d.state in (DownloadState.RUNNING, DownloadState.QUEUED):
                return d
        dl = Download(remote, self.models_dir / name, client=self.client, events=self.events)
        self.items[dl.id] = dl
        return dl.start()

    async def aclose(self) -> None:
        for d in list(self.items.values()):
            await d.pause()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
