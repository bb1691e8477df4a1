"""Typed keys of the values the gateway's aiohttp application carries (route modules share them)."""

from __future__ import annotations

from app.kernel.gateway import web
from app.kernel.kernel import Kernel

KERNEL = web.AppKey("kernel", Kernel)
AUDIT_PROMPTS = web.AppKey("audit_prompts", bool)
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
LANE = web.AppKey("lane", object)  # the pass-through lane, when on (app.kernel.gateway.lane.Lane)
LANE_OPENING = "lane_opening"  # request[LANE_OPENING]: a router Opening the pass-through lane handed over
CLOSERS = "closers"  # app[CLOSERS]: async callables GatewayServer.stop awaits first (route groups' services)
