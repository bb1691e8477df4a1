"""GGUF downloads against a real local HTTP server: progress, Range resume, checksum, offline."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest

from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.events import EventBus
from app.kernel.models.downloads import (
    ChecksumError,
    Downloads,
    DownloadState,
    OfflineError,
    RemoteFile,
    hf_file_url,
)
from tests.fakes.file_server import FileServer


@pytest.fixture
async def gguf_server(tiny_gguf):
    server = await FileServer(tiny_gguf.read_bytes()).start()
    try:
        yield server
    finally:
        server.release.set()
        await server.stop()


@pytest.fixture
async def downloads(tmp_path, gguf_server):
    bus = EventBus()
    dl = Downloads(tmp_path / "models", bus, endpoint=gguf_server.url)
    try:
        yield dl
    finally:
        await dl.aclose()


async def test_lists_repo_ggufs_with_size_and_sha(downloads, gguf_server):
    files = await downloads.list_repo("acme/tiny")
    assert [f.filename for f in files] == ["tiny-chat.gguf"]
    assert files[0].size == len(gguf_server.data)
    assert files[0].sha256 == hashlib.sha256(gguf_server.data).hexdigest()
    assert files[0].url == hf_file_url("acme/tiny", "tiny-chat.gguf", endpoint=gguf_server.url)


async def test_unknown_repo_and_bad_names_are_typed_errors(downloads):
    with pytest.raises(NotFoundError, match="no public model repo"):
        await downloads.list_repo("acme/nothing")
    with pytest.raises(BadRequestError, match="owner/name"):
        await downloads.list_repo("not a repo")
    with pytest.raises(BadRequestError, match="gguf"):
        downloads.start(RemoteFile(url="http://127.0.0.1:1/x", filename="../evil.sh"))


async def test_download_verifies_and_lands_a_loadable_gguf(downloads, gguf_server, tmp_path):
    sub = downloads.events.subscribe()
    [remote] = await downloads.list_repo("acme/tiny")
    dl = downloads.start(remote)
    assert await dl.wait() == DownloadState.DONE, dl.error
    target = tmp_path / "models" / "tiny-chat.gguf"
    assert target.read_bytes() == gguf_server.data
    assert not dl.part.exists()
    states = []
    while not sub.queue.empty():
        states.append(sub.queue.get_nowait().state)
    assert states[0] == "running" and states[-2:] == ["verifying", "done"]
    from app.kernel.models.gguf_header import read_gguf_header

    assert read_gguf_header(target).context_length == 512  # the real file, readable


async def test_pause_keeps_the_part_and_resume_asks_for_the_rest(downloads, gguf_server):
    sub = downloads.events.subscribe()
    gguf_server.stall_after = 40_000
    [remote] = await downloads.list_repo("acme/tiny")
    dl = downloads.start(remote)
    async with asyncio.timeout(20):
        async for event in sub:
            if event.received >= 40_000:
                break
    await dl.pause()
    assert dl.state == DownloadState.PAUSED
    kept = dl.part.stat().st_size
    assert kept >= 40_000
    gguf_server.release.set()
    dl.resume()
    assert await dl.wait() == DownloadState.DONE, dl.error
    assert gguf_server.ranges == [None, f"bytes={kept}-"]
    assert dl.dest.read_bytes() == gguf_server.data


async def test_a_server_without_range_support_restarts_cleanly(downloads, gguf_server):
    [remote] = await downloads.list_repo("acme/tiny")
    dl = downloads.start(remote)
    dl.part.parent.mkdir(parents=True, exist_ok=True)
    await dl.pause()
    dl.part.write_bytes(gguf_server.data[:1000])
    gguf_server.honour_range = False
    dl.resume()
    assert await dl.wait() == DownloadState.DONE, dl.error
    assert dl.dest.read_bytes() == gguf_server.data


async def test_checksum_mismatch_deletes_the_file_and_says_so(downloads, gguf_server):
    [remote] = await downloads.list_repo("acme/tiny")
    bad = RemoteFile(url=remote.url, filename=remote.filename, size=remote.size, sha256="0" * 64)
    dl = downloads.start(bad)
    assert await dl.wait() == DownloadState.FAILED
    assert "failed its checksum" in dl.error
    assert not dl.part.exists() and not dl.dest.exists()
    assert ChecksumError.code == "checksum_mismatch"


async def test_offline_is_a_clear_message_and_keeps_the_part(tmp_path):
    with socket.socket() as s:  # a port with nobody listening: connection refused, like no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dls = Downloads(tmp_path / "models", endpoint=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(OfflineError, match="offline"):
            await dls.list_repo("acme/tiny")
        part = tmp_path / "models" / "x.gguf.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"GGUF" + b"\0" * 100)
        dl = dls.start(
            RemoteFile(url=f"http://127.0.0.1:{port}/acme/tiny/resolve/main/x.gguf", filename="x.gguf")
        )
        assert await dl.wait() == DownloadState.FAILED
        assert "offline" in dl.error
        assert part.stat().st_size == 104  # nothing lost: resume continues from here
    finally:
        await dls.aclose()


async def test_cancel_removes_the_partial_file(downloads, gguf_server):
    gguf_server.stall_after = 8192
    [remote] = await downloads.list_repo("acme/tiny")
    sub = downloads.events.subscribe()
    dl = downloads.start(remote)
    async with asyncio.timeout(20):
        async for event in sub:
            if event.received >= 8192:
                break
    await dl.cancel()
    assert dl.state == DownloadState.CANCELLED
    assert not dl.part.exists() and not dl.dest.exists()
