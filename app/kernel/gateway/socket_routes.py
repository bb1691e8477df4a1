"""/api/socket: read the sockets, swap a model in, edit an alias's pool, fallbacks and routing;
/api/socket/swaps: the swap log (every swap, automatic ones with why)."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict

from app.kernel.gateway import web
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import KERNEL
from app.kernel.socket.manager import SwapStrategy
from app.kernel.socket.router import RoutingStrategy


class SwapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    alias: str = "default"
    strategy: SwapStrategy = SwapStrategy.GRACEFUL


class AliasPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallbacks: list[str] | None = None
    pool: list[str] | None = None
    routing: RoutingStrategy | None = None


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def show(request: web.Request) -> web.Response:
    return _json(request.app[KERNEL].socket_state())


async def swaps(request: web.Request) -> web.Response:
    """The swap log, newest first (`?limit=` 1 to 1000, `?alias=`)."""
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise RequestError("limit: an integer from 1 to 1000", param="limit")
    rows = request.app[KERNEL].socket.history(limit, request.query.get("alias") or None)
    return _json({"data": rows})


async def swap(request: web.Request) -> web.Response:
    body = SwapBody.model_validate_json(await request.read())
    result = await request.app[KERNEL].socket.swap(body.alias, body.model, body.strategy)
    return _json(result.to_dict())


async def patch_alias(request: web.Request) -> web.Response:
    patch = AliasPatch.model_validate_json(await request.read())
    config = request.app[KERNEL].socket.configure(
        request.match_info["alias"], fallbacks=patch.fallbacks, pool=patch.pool, routing=patch.routing
    )
    return _json(config.to_dict())


async def delete_alias(request: web.Request) -> web.Response:
    request.app[KERNEL].socket.remove(request.match_info["alias"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/socket", show)
    app.router.add_get("/api/socket/swaps", swaps)
    app.router.add_post("/api/socket/swap", swap)
    app.router.add_patch("/api/socket/{alias}", patch_alias)
    app.router.add_delete("/api/socket/{alias}", delete_alias)
