"""`byenatos socket show|swap|set|remove`.

When the daemon (or the app) is running, the change must happen in *its* kernel — that is
where requests are being served — so the CLI talks to the gateway's /api/socket with the
user's admin token. With nothing running it edits the saved sockets directly.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from app.cli.output import table
from app.kernel.errors import ByenatosError, ConfigError, from_http_status
from app.kernel.socket.manager import SwapStrategy

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

# httpx and the kernel are imported inside the functions: building the argument parser
# happens on every `byenatos …` start, `serve` included, and must stay cheap.


def add_parser(sub: argparse._SubParsersAction, parser_class: type) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("socket", help="the AI socket: which model serves each alias; hot swap")
    ssub = s.add_subparsers(dest="socket_command", metavar="ACTION", required=True, parser_class=parser_class)
    show = ssub.add_parser("show", help="aliases, their models, fallbacks and health")
    show.add_argument("--json", action="store_true")
    sw = ssub.add_parser("swap", help="plug another model into a socket (hot swap)")
    sw.add_argument("model")
    sw.add_argument("--alias", default="default")
    sw.add_argument("--strategy", default="graceful", choices=[s.value for s in SwapStrategy],
                    help="graceful: running requests finish on the old model (default); immediate: they "
                         "are cancelled; background: load the new one first; session_aware: open "
                         "sessions stay until they end")
    st = ssub.add_parser("set", help="edit an alias: fallbacks, pool, routing")
    st.add_argument("alias")
    st.add_argument("--fallbacks", help="comma-separated model ids, tried in order ('' clears)")
    st.add_argument("--pool", help="comma-separated models balanced with the primary ('' clears)")
    st.add_argument("--routing", help="round_robin, least_loaded, fastest_response, highest_quality, "
                                      "lowest_cost or resource_aware")
    rm = ssub.add_parser("remove", help="remove an alias (not `default`)")
    rm.add_argument("alias")


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


async def socket(args: argparse.Namespace) -> int:
    from app.kernel.kernel import Kernel

    async with Kernel() as kernel:
        remote = await _Daemon.find(kernel)
        action = args.socket_command
        if action == "show":
            state = await remote.call("GET", "/api/socket") if remote else _local_state(kernel)
            _print_state(state, args.json, remote is not None)
            return 0
        if action == "swap":
            body = {"alias": args.alias, "model": args.model, "strategy": args.strategy}
            if remote:
                result = await remote.call("POST", "/api/socket/swap", body)
            else:
                result = (await kernel.socket.swap(args.alias, args.model, args.strategy)).to_dict()
            extra = ""
            if result["cancelled"]:
                extra = f", {result['cancelled']} running requests cancelled"
            elif result["still_running"]:
                extra = f", {result['still_running']} running requests finish on {result['previous']}"
            print(f"socket {result['alias']}: {result['previous']} → {result['current']} "
                  f"({result['strategy']}, {result['duration_ms']:.1f} ms{extra})")
            return 0
        if action == "set":
            patch: dict[str, Any] = {k: v for k, v in (("fallbacks", _split(args.fallbacks)),
                                                        ("pool", _split(args.pool)),
                                                        ("routing", args.routing)) if v is not None}
            if not patch:
                raise ConfigError("nothing to change: give --fallbacks, --pool or --routing")
            if remote:
                config = await remote.call("PATCH", f"/api/socket/{args.alias}", patch)
            else:
                config = kernel.socket.configure(args.alias, **patch).to_dict()
            print(f"socket {config['alias']}: {config['model']}, fallbacks {config['fallbacks'] or 'none'}, "
                  f"routing {config['routing']}")
            return 0
        if remote:
            await remote.call("DELETE", f"/api/socket/{args.alias}")
        else:
            kernel.socket.remove(args.alias)
        print(f"removed socket {args.alias}")
        return 0


def _local_state(kernel: Kernel) -> dict[str, Any]:
    return kernel.socket_state()


def _print_state(state: dict[str, Any], as_json: bool, live: bool) -> None:
    if as_json:
        print(json.dumps(state, indent=2))
        return
    health = {d["model"]: d for d in state.get("deployments", [])}
    rows = []
    for a in state["aliases"]:
        d = health.get(a["model"], {})
        lat = f"{d['latency_ms']:.0f} ms" if d.get("latency_ms") is not None else ""
        rows.append((a["alias"], a["model"], _health(d) or ("" if not live else "idle"), lat,
                     ", ".join(a["fallbacks"]) or "-", a["routing"]))
    if not rows:
        print("no socket yet: add a model first (`byenatos models scan`)")
        return
    print(table(["ALIAS", "MODEL", "HEALTH", "LATENCY", "FALLBACKS", "ROUTING"], rows))
    back = state.get("auto_return") or {}
    for a in state["aliases"]:
        if a.get("auto_swapped"):
            print(auto_swap_line(a["alias"], a["auto_swapped"], back))
    cooling = [d for d in state.get("deployments", []) if d.get("health") == "cooling"]
    for d in cooling:
        print(f"{d['model']} is cooling down after errors{_until(d.get('until'))}"
              + (f": {d['last_error']}" if d.get("last_error") else ""))
    if not live:
        print("(the daemon is not running: health appears once requests are served)")


def _health(d: dict[str, Any]) -> str:
    if d.get("health") == "cooling":
        return "cooling" + _until(d.get("until"), short=True)
    return str(d.get("health") or d.get("state") or "")


def _when(ts: float) -> str:
    """A time of day, with the date if it is not today."""
    t = time.localtime(ts)
    return time.strftime("%H:%M:%S" if t[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S", t)


def _until(until: float | None, *, short: bool = False) -> str:
    if not until:
        return ""
    if until <= time.time():
        return " (trying again)" if short else ", being tried again"
    return f" until {_when(until)}" if short else f", tried again at {_when(until)}"


def auto_swap_line(alias: str, auto: dict[str, Any], back: dict[str, Any]) -> str:
    """"socket default: swapped automatically from a/m to b/m at 14:03:12 because …; …"."""
    trigger = auto.get("trigger") or "automatic"
    because = auto.get("reason") or f"of its {trigger} rule"
    line = (f"socket {alias}: swapped automatically from {auto.get('from')} to {auto.get('to')} at "
            f"{_when(float(auto.get('at') or 0))} because {because}")
    if auto.get("returns") and back.get("enabled", True):
        after = float(back.get("after_s") or 0)
        line += f"; {auto.get('from')} comes back once it has been healthy for {after:.0f} s"
    elif trigger == "schedule":
        line += f"; {auto.get('from')} comes back when the schedule's window ends"
    elif trigger in ("error", "performance", "resource"):
        line += f"; it stays on {auto.get('to')} (socket.auto_return is off): swap {auto.get('from')} back in yourself"
    else:
        line += f"; it stays until another swap (`byenatos socket swap {auto.get('from')} --alias {alias}`)"
    return line


class _Daemon:
    """The running gateway, reached with the user's admin token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token

    @classmethod
    async def find(cls, kernel: Kernel) -> _Daemon | None:
        """The daemon or app serving this home, on whatever port (its runtime file says where)."""
        from app.kernel.runtime_file import locate

        found = await locate(kernel.paths, kernel.settings.gateway)
        if found is None:
            return None
        apps = getattr(kernel, "apps", None)
        return cls(found[0], apps.admin_token() if apps is not None else None)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with httpx.AsyncClient(timeout=60, trust_env=False) as c:
                r = await c.request(method, f"{self.base}{path}", json=body, headers=headers)
        except httpx.HTTPError as e:
            raise ByenatosError(f"the running ByenatOS did not answer: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:300]
            raise from_http_status(r.status_code, message)
        return r.json() if r.content else None
