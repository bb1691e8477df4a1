"""ByenatOS itself: show and swap the socket, pause and resume personalization, list models, so
the user can say "switch to the local model" or "stop personalizing" to the assistant.

The tools reach the kernel through `ctx.services["system"]`, a `SystemControl`: a narrow set of
the kernel's public calls (the same the CLI and /api/socket use) handed in by `Kernel.tool_services`,
so this package never imports the kernel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.kernel.errors import ByenatosError
from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, required_str

SWAP_STRATEGIES = ("immediate", "graceful", "background", "session_aware")  # socket.manager.SwapStrategy
MAX_MODELS = 200


class SystemControl(Protocol):
    def socket_state(self) -> dict[str, Any]: ...

    async def swap(self, alias: str, model: str, strategy: str) -> dict[str, Any]: ...

    def personalization_paused(self) -> bool: ...

    def pause_personalization(self, paused: bool) -> None: ...

    def models(self) -> list[Any]:  # ModelSpec
        ...


@dataclass(frozen=True, slots=True)
class KernelControl:
    """A SystemControl made of the kernel's own calls (built in Kernel.tool_services)."""

    state: Callable[[], dict[str, Any]]
    swap_model: Callable[[str, str, str], Awaitable[Any]]  # SocketManager.swap → SwapResult
    personal: Callable[[], Any]  # the PersonalService (built on first use)
    list_models: Callable[[], list[Any]]

    def socket_state(self) -> dict[str, Any]:
        return self.state()

    async def swap(self, alias: str, model: str, strategy: str) -> dict[str, Any]:
        return (await self.swap_model(alias, model, strategy)).to_dict()  # type: ignore[no-any-return]

    def personalization_paused(self) -> bool:
        return bool(self.personal().paused)

    def pause_personalization(self, paused: bool) -> None:
        self.personal().set_paused(paused)

    def models(self) -> list[Any]:
        return self.list_models()


def _system(ctx: ToolContext) -> SystemControl:
    system = ctx.services.get("system")
    if system is None:
        raise ToolError("ByenatOS's controls are not available to this caller")
    return system  # type: ignore[no-any-return]


async def socket_show(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    state = _system(ctx).socket_state()
    # What a model can act on: each alias's model and chain, and how each deployment is doing.
    return {
        "aliases": [{k: a.get(k) for k in ("alias", "model", "fallbacks", "pool", "routing", "in_flight",
                                            "auto_swapped")} for a in state.get("aliases", [])],
        "deployments": [{k: d.get(k) for k in ("model", "health", "in_flight", "latency_ms", "last_error")}
                        for d in state.get("deployments", [])],
        "resident": [r.get("model") for r in state.get("resident", [])],
    }


async def socket_swap(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    model = required_str(args, "model", max_len=300)
    alias = args.get("alias", "default")
    if not isinstance(alias, str) or not alias.strip() or len(alias) > 64:
        raise ToolError("argument 'alias': a socket alias such as 'default' (at most 64 characters)")
    strategy = args.get("strategy", "graceful")
    if strategy not in SWAP_STRATEGIES:
        raise ToolError(f"argument 'strategy': one of {', '.join(SWAP_STRATEGIES)}")
    try:
        return await _system(ctx).swap(alias.strip(), model.strip(), strategy)
    except ByenatosError as e:  # an unknown model or alias: the model can pick another
        raise ToolError(f"could not swap {alias!r} to {model!r}: {e}") from None


async def personalization_pause(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return _set_paused(ctx, True)


async def personalization_resume(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return _set_paused(ctx, False)


def _set_paused(ctx: ToolContext, paused: bool) -> dict[str, Any]:
    system = _system(ctx)
    was = system.personalization_paused()
    try:
        system.pause_personalization(paused)
    except ByenatosError as e:
        raise ToolError(f"could not {'pause' if paused else 'resume'} personalization: {e}") from None
    return {"paused": paused, "changed": was != paused}


async def models_list(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    query = args.get("query")
    if query is not None and (not isinstance(query, str) or len(query) > 200):
        raise ToolError("argument 'query': text to look for in model ids and names (at most 200 characters)")
    local = args.get("local")
    if local is not None and not isinstance(local, bool):
        raise ToolError("argument 'local': true (local models only) or false (cloud models only)")
    needle = (query or "").strip().lower()
    found = [m for m in _system(ctx).models()
             if (not needle or needle in m.id.lower() or needle in (m.display_name or "").lower())
             and (local is None or m.local is local)]
    return {"models": [
        {"id": m.id, "name": m.display_name or m.name, "provider": m.provider, "local": m.local,
         "context_window": m.context_window, "quality": m.quality,
         "capabilities": [c for c, on in m.capabilities.model_dump().items() if on],
         "cost_per_million_tokens": {"input": round(m.input_cost_per_token * 1e6, 4),
                                     "output": round(m.output_cost_per_token * 1e6, 4)}}
        for m in found[:MAX_MODELS]], "count": len(found), "truncated": len(found) > MAX_MODELS}


_NONE: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def tools() -> list[Tool]:
    return [
        Tool("socket_show", "Show ByenatOS's AI socket: which model each alias (such as 'default') uses now, "
             "its fallbacks, and how each model deployment is doing.", _NONE, socket_show),
        Tool("socket_swap", "Swap the model in a socket alias (default: 'default'), e.g. to a local model. "
             "'graceful' (the default) lets requests in flight finish on the old model.",
             {"type": "object", "properties": {
                 "model": {"type": "string", "description": "a model id or name from models_list"},
                 "alias": {"type": "string"},
                 "strategy": {"type": "string", "enum": list(SWAP_STRATEGIES)}},
              "required": ["model"], "additionalProperties": False},
             socket_swap, risk=Risk.WRITE),
        Tool("personalization_pause", "Pause personalization: no app gets the user's Personal System Prompt "
             "until it is resumed.", _NONE, personalization_pause, risk=Risk.WRITE),
        Tool("personalization_resume", "Resume personalization after a pause.", _NONE, personalization_resume,
             risk=Risk.WRITE),
        Tool("models_list", "List the models ByenatOS can use (id, provider, local or cloud, context window, "
             "capabilities, price), optionally filtered by text or by local/cloud.",
             {"type": "object", "properties": {"query": {"type": "string"}, "local": {"type": "boolean"}},
              "additionalProperties": False},
             models_list),
    ]
