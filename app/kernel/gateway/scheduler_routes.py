"""/api/scheduler: the scheduler for LLM calls — its policy, and who runs and waits where."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, Field

from app.kernel.gateway import web
from app.kernel.gateway.keys import KERNEL
from app.kernel.scheduler import Policy
from app.kernel.scheduler.service import MAX_STARVATION_S


class SchedulerPatch(BaseModel):
    """PUT /api/scheduler: the fields to change (leave one out to keep it)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    policy: Policy = None  # type: ignore[assignment]  # absent: unchanged (null is refused)
    starvation_s: float = Field(None, gt=0, le=MAX_STARVATION_S)  # type: ignore[assignment]


def _state(kernel) -> web.Response:
    router = kernel.router
    data = router.scheduler.snapshot(router.deployments())
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def show(request: web.Request) -> web.Response:
    return _state(request.app[KERNEL])


async def configure(request: web.Request) -> web.Response:
    patch = SchedulerPatch.model_validate_json(await request.read())
    kernel = request.app[KERNEL]
    kernel.router.scheduler.configure(policy=patch.policy, starvation_s=patch.starvation_s)
    settings = kernel.settings.scheduler
    settings.policy = kernel.router.scheduler.policy.value
    settings.starvation_s = kernel.router.scheduler.starvation_s
    kernel.save_settings()  # kept across restarts
    return _state(kernel)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/scheduler", show)
    app.router.add_put("/api/scheduler", configure)
