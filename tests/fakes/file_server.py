"""A local file server shaped like Hugging Face (repo tree listing, resolve URLs, Range), for download tests."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web


class FileServer:
    """Serves one file like Hugging Face: /api/models/<repo>/tree/main and /<repo>/resolve/main/<file>,
    honouring Range; can hold the transfer after `stall_after` bytes until `release` is set."""

    def __init__(self, data: bytes, filename: str = "tiny-chat.gguf", repo: str = "acme/tiny") -> None:
        self.data, self.filename, self.repo = data, filename, repo
        self.ranges: list[str | None] = []
        self.stall_after: int | None = None
        self.release = asyncio.Event()
        self.honour_range = True
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FileServer:
        app = web.Application()
        app.router.add_get("/api/models/{owner}/{name}/tree/{rev}", self._tree)
        app.router.add_get("/{owner}/{name}/resolve/{rev}/{file}", self._file)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _tree(self, request: web.Request) -> web.Response:
        if f"{request.match_info['owner']}/{request.match_info['name']}" != self.repo:
            return web.json_response({"error": "Repository not found"}, status=404)
        sha = hashlib.sha256(self.data).hexdigest()
        return web.json_response(
            [
                {"type": "file", "path": "README.md", "size": 10},
                {
                    "type": "file",
                    "path": self.filename,
                    "size": len(self.data),
                    "lfs": {"oid": sha, "size": len(self.data), "pointerSize": 134},
                },
            ]
        )

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["file"] != self.filename:
            return web.Response(status=404)
        rng = request.headers.get("Range")
        self.ranges.append(rng)
        start = 0
        if rng and self.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(self.data):
                return web.Response(status=416)
        resp = web.StreamResponse(status=206 if start and self.honour_range else 200)
        resp.content_length = len(self.data) - start
        await resp.prepare(request)
        pos = start
        while pos < len(self.data):
            if self.stall_after is not None and pos >= self.stall_after and not self.release.is_set():
                await self.release.wait()
            end = min(len(self.data), pos + 4096)
            await resp.write(self.data[pos:end])
            pos = end
        await resp.write_eof()
        return resp
