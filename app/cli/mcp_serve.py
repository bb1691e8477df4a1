"""`byenatos mcp serve`: ByenatOS as an MCP server over stdio, for Claude Desktop, Cursor,
Claude Code and any other MCP client's config file (docs/mcp-server.md).

Which kernel serves it: when ByenatOS runs for this home (`byenatos serve` or the desktop app,
found through the runtime file as `byenatos socket` and `agents` find it), this process starts
no kernel and relays the client's messages to that gateway's /mcp: a second kernel on the same
data would run agents twice and hold a socket of its own. With nothing running, the kernel
starts here, in this process, for as long as the client keeps it.

Whose token: `--token-env VAR` (default BYENATOS_TOKEN, which the client config's `env` sets)
names an app token; the client then sees exactly what that app may see. Without one, the
user's admin token (the CLI runs as the user, who holds it anyway), and a line on stderr says so.
"""

from __future__ import annotations

import argparse
import os
import sys

TOKEN_ENV = "BYENATOS_TOKEN"


def _page_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= 200:
        raise argparse.ArgumentTypeError("a page holds 1 to 200 items")
    return n


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """`serve` under the `mcp` group."""
    s = sub.add_parser("serve", help="serve ByenatOS's memory, PSP, socket and agents to an MCP client over stdio")
    s.add_argument("--token-env", default=TOKEN_ENV, metavar="VAR",
                   help=f"environment variable holding the app token (default {TOKEN_ENV}; "
                        "unset: the user's admin token)")
    s.add_argument("--in-process", action="store_true",
                   help="always serve from a kernel in this process, never relay (an error while "
                        "ByenatOS runs: two kernels on one home would run agents twice)")
    s.add_argument("--page-size", type=_page_size, default=None, metavar="N",
                   help="tools and resources per page of a list (default 50; with a relay, the daemon's)")
    return s


async def serve(args: argparse.Namespace) -> int:
    import asyncio

    from app.kernel.config import Paths, load_settings
    from app.kernel.errors import ConfigError
    from app.kernel.runtime_file import locate

    paths = Paths.default()
    token = os.environ.get(args.token_env) or None
    found = await locate(paths, load_settings(paths).gateway)
    if found is not None:
        if args.in_process:
            raise ConfigError(f"ByenatOS is running ({found[0]}): `byenatos mcp serve` relays to it; "
                              "stop it first to run a kernel here")
        from app.kernel.mcp_server.stdio import relay

        if token is None:
            from app.cli.agents import _admin_token

            token = await asyncio.to_thread(_admin_token, paths)
            _say_admin(args.token_env)
        _say(f"relaying to ByenatOS at {found[0]}/mcp")
        await relay(f"{found[0]}/mcp", token)
        return 0
    from app.kernel.kernel import Kernel
    from app.kernel.mcp_server.server import PAGE_SIZE
    from app.kernel.mcp_server.stdio import serve_in_process

    async with Kernel(paths) as kernel:
        if token is None:
            token = kernel.apps.admin_token()
            _say_admin(args.token_env)
        elif kernel.apps.authenticate(token) is None:
            raise ConfigError(f"the token in ${args.token_env} is invalid or revoked; "
                              "`byenatos apps register NAME --scope …` gives a new one")
        _say("ByenatOS is not running: serving from a kernel in this process")
        await serve_in_process(kernel, token, page_size=args.page_size or PAGE_SIZE)
    return 0


def _say(line: str) -> None:
    print(f"byenatos mcp: {line}", file=sys.stderr, flush=True)  # stdout is the protocol's


def _say_admin(var: str) -> None:
    _say(f"no app token in ${var}: serving with the user's admin token (every tool); "
         "set it to an app's token to give the client less")
