"""`byenatos apps list|register|revoke|limit|token|usage`: who may use the gateway, and how much.

These work on the store directly, so they work whether or not the daemon runs; a running
daemon notices changes (a revoked token, new limits) within two seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime

from app.cli.output import table
from app.kernel.errors import ConfigError
from app.kernel.kernel import Kernel
from app.kernel.security.apps import SCOPES, UNCHANGED, AppLimits


def add_parser(sub, parser_class: type[argparse.ArgumentParser]) -> None:
    """The `apps` sub-command (called from app.cli.main.build_parser)."""
    a = sub.add_parser("apps", help="apps allowed to use the gateway: tokens, scopes, limits, usage")
    asub = a.add_subparsers(dest="apps_command", metavar="ACTION", required=True, parser_class=parser_class)
    al = asub.add_parser("list", help="registered apps")
    al.add_argument("--all", action="store_true", help="include revoked apps")
    al.add_argument("--json", action="store_true", help="machine-readable output")
    ar = asub.add_parser("register", help="register an app and print its token (shown once)")
    ar.add_argument("name")
    ar.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        metavar="SCOPE",
        help=f"repeatable; one of {', '.join(SCOPES)} (default: chat)",
    )
    ar.add_argument("--replace", action="store_true", help="re-issue the token of an app that exists")
    _limit_args(ar)
    av = asub.add_parser("revoke", help="revoke an app's token")
    av.add_argument("name")
    alim = asub.add_parser("limit", help="set an app's rate limit and daily budgets ('none' removes one)")
    alim.add_argument("name")
    _limit_args(alim)
    asub.add_parser("token", help="print the admin token the CLI and the app use (keep it secret)")
    au = asub.add_parser("usage", help="requests, tokens and cost per app")
    au.add_argument("--days", type=float, default=30.0, help="how far back (default 30)")
    au.add_argument("--by-model", action="store_true")
    au.add_argument("--json", action="store_true")


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpm", type=_optional(int), default=UNCHANGED, help="requests per minute")
    p.add_argument("--daily-tokens", type=_optional(int), default=UNCHANGED, help="tokens per UTC day")
    p.add_argument("--daily-cost", type=_optional(float), default=UNCHANGED, help="US dollars per UTC day")


def _optional(kind):
    def parse(text: str):
        if text.lower() in ("none", "off", "unlimited"):
            return None
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value

    parse.__name__ = kind.__name__
    return parse


async def apps(args: argparse.Namespace) -> int:
    async with Kernel() as kernel:
        action = args.apps_command
        if action == "list":
            return _list(kernel, args)
        if action == "register":
            return _register(kernel, args)
        if action == "revoke":
            info = kernel.apps.revoke(args.name)
            print(f"revoked {info.id}: its token no longer works")
            return 0
        if action == "limit":
            info = kernel.apps.set_limits(
                args.name,
                rate_limit_rpm=args.rpm,
                daily_token_budget=args.daily_tokens,
                daily_cost_budget=args.daily_cost,
            )
            print(f"{info.id}: {_limits_text(info.limits)}")
            return 0
        if action == "token":
            print(kernel.apps.admin_token())
            return 0
        return await _usage(kernel, args)


def _limits_text(limits: AppLimits) -> str:
    parts = []
    if limits.rate_limit_rpm is not None:
        parts.append(f"{limits.rate_limit_rpm} req/min")
    if limits.daily_token_budget is not None:
        parts.append(f"{limits.daily_token_budget:,} tokens/day")
    if limits.daily_cost_budget is not None:
        parts.append(f"${limits.daily_cost_budget:.2f}/day")
    return ", ".join(parts) or "no limits"


def _list(kernel: Kernel, args: argparse.Namespace) -> int:
    infos = kernel.apps.list(include_revoked=args.all)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    rows = [
        (
            i.id,
            ",".join(i.scopes),
            i.token_hint,
            _limits_text(i.limits),
            datetime.fromtimestamp(i.created_at).strftime("%Y-%m-%d"),
            "revoked" if i.revoked else "",
        )
        for i in infos
    ]
    print(
        table(["APP", "SCOPES", "TOKEN", "LIMITS", "SINCE", ""], rows)
        if rows
        else "no apps yet: `byenatos apps register NAME` makes a token"
    )
    return 0


def _register(kernel: Kernel, args: argparse.Namespace) -> int:
    given = {
        "rate_limit_rpm": args.rpm,
        "daily_token_budget": args.daily_tokens,
        "daily_cost_budget": args.daily_cost,
    }
    limits = (
        AppLimits(**{k: v for k, v in given.items() if v is not UNCHANGED})
        if any(v is not UNCHANGED for v in given.values())
        else None
    )
    info, token = kernel.apps.register(args.name, args.scope or ["chat"], replace=args.replace, limits=limits)
    print(token)
    print(
        f"app {info.id} ({', '.join(info.scopes)}; {_limits_text(info.limits)}): this token is shown once; "
        "give it to the app as its API key",
        flush=True,
    )
    return 0


async def _usage(kernel: Kernel, args: argparse.Namespace) -> int:
    if args.days <= 0:
        raise ConfigError("--days must be positive")
    rows = await kernel.accounting.audit.usage(since=time.time() - args.days * 86400, by_model=args.by_model)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no requests in the last {args.days:g} days")
        return 0
    headers = ["APP", *(["MODEL"] if args.by_model else []), "REQUESTS", "ERRORS", "TOKENS", "COST"]
    print(
        table(
            headers,
            [
                (
                    r["app"] or "(cli)",
                    *([r["model"]] if args.by_model else []),
                    r["requests"],
                    r["errors"],
                    f"{r['total_tokens']:,}",
                    f"${r['cost']:.4f}",
                )
                for r in rows
            ],
        )
    )
    return 0
