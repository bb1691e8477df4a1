"""The OpenAPI description of /api/scheduler (scheduler_routes.py)."""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.openapi_kit import BOOL, INT, NUM, STR, json_content, obj, ok, op, ref
from app.kernel.scheduler import Policy, ProgramClass
from app.kernel.scheduler.service import MAX_STARVATION_S

_POLICY = {
    "enum": [p.value for p in Policy],
    "description": "las: least attained service per program first (the default); fifo: arrival order; "
    "round_robin: programs take turns; priority: the program's priority, higher first. "
    "Interactive calls go before normal and background ones under every policy but fifo.",
}
_STARVATION = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": MAX_STARVATION_S,
    "description": "seconds: a call that has waited this long is served next, whatever its class",
}
_COUNTS = obj(tuple(c.value for c in ProgramClass), **{c.value: INT for c in ProgramClass})

SCHEMAS: dict[str, Any] = {
    "SchedulerPatch": obj(closed=True, policy=_POLICY, starvation_s=_STARVATION),
    "SchedulerState": obj(
        ("policy", "starvation_s", "policies", "deployments"),
        policy=_POLICY,
        starvation_s=NUM,
        policies={"type": "array", "items": STR},
        deployments={
            "type": "array",
            "items": obj(
                ("model", "limit", "running", "waiting", "programs"),
                model=STR,
                limit={**INT, "description": "calls it serves at once"},
                running={**INT, "description": "calls holding a slot now"},
                preemptible={**BOOL, "description": "a running generation can be paused for a more urgent call"},
                waiting={**_COUNTS, "description": "calls waiting for a slot, by class"},
                oldest_wait_s=NUM,
                handed_over={**INT, "description": "slots handed straight to a waiting call"},
                starvation_rescues={**INT, "description": "of which to a call past the starvation bound"},
                programs={
                    "type": "array",
                    "description": "the programs (apps, agents) with the most attained service here",
                    "items": obj(
                        ("id", "attained_s"),
                        id=STR,
                        attained_s={**NUM, "description": "seconds its calls have held a slot"},
                        running=INT,
                        waiting=INT,
                    ),
                },
            ),
        },
    ),
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/scheduler": {
        "get": op(
            "The scheduler's policy and, per deployment, what runs, what waits and who used it most (admin)",
            ok(ref("SchedulerState")),
        ),
        "put": op(
            "Set the scheduler's policy or starvation bound (admin; kept in the settings)",
            ok(ref("SchedulerState")),
            body=json_content(ref("SchedulerPatch")),
        ),
    },
}
