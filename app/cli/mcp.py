"""`byenatos mcp add|list|test|remove|import`: the MCP servers agents and the assistant may use.

The servers live in `mcp.json` in the config dir (the Claude Desktop / Cursor `mcpServers`
shape). These commands change that file directly, as the user; a running ByenatOS sees the
change within a second (its host watches the file), so nothing here needs the daemon.
`test` starts the server here, in this process, with the environment the CLI has.

Secrets (`--secret VAR`, `--secret-header NAME`) are read from standard input, one per line in
the order given (or asked for, hidden, on a terminal), and kept in the keyring: the file names
them, never holds them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import sys
from typing import Any

from app.cli.output import table
from app.kernel.errors import BadRequestError

# The kernel's MCP modules are imported inside the functions: building the parser runs on
# every `byenatos …` start.


def add_parser(sub: argparse._SubParsersAction, parser_class: type) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("mcp", help="MCP servers: add, list, test, remove, import (from Claude Desktop, Cursor)")
    msub = m.add_subparsers(dest="mcp_command", metavar="ACTION", required=True, parser_class=parser_class)
    a = msub.add_parser("add", help="add a server: `mcp add NAME -- COMMAND ARGS…` or `mcp add NAME --url URL`",
                        description="Add an MCP server. A local one: byenatos mcp add time -- uvx mcp-server-time. "
                                    "A remote one: byenatos mcp add docs --url https://example.com/mcp")
    a.add_argument("name", help="its name here (letters, digits, '-', '_'); tools become mcp__NAME__TOOL")
    # REMAINDER: argparse drops a `--` inside a sub-command, so the rest is split by hand (_split)
    a.add_argument("server_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS",
                   help="the program that runs the server over stdio, after `--`")
    _add_options(a)
    ls = msub.add_parser("list", help="the configured servers (and what Claude Desktop or Cursor have to import)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    t = msub.add_parser("test", help="start a server, list its tools, say in plain words what went wrong")
    t.add_argument("name")
    t.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="for each step (default 30)")
    t.add_argument("--json", action="store_true", help="the report as JSON")
    r = msub.add_parser("remove", help="remove a server (and the secrets kept for it)")
    r.add_argument("name")
    i = msub.add_parser("import", help="offer the servers Claude Desktop or Cursor have; import the ones you pick")
    i.add_argument("source", nargs="?", help="claude, cursor or a file in the mcpServers shape (default: all found)")
    i.add_argument("names", nargs="*", metavar="NAME", help="only these servers (default: every one offered)")
    i.add_argument("--yes", "-y", action="store_true", help="import without asking")
    i.add_argument("--replace", action="store_true", help="replace servers of the same name here")
    # == `byenatos mcp serve` (ByenatOS as an MCP server: app/cli/mcp_serve.py) joins the group here ==
    with contextlib.suppress(ImportError):
        from app.cli.mcp_serve import add_serve_parser

        add_serve_parser(msub)


def _add_options(a: argparse.ArgumentParser) -> None:
    a.add_argument("--url", help="a remote server's endpoint (streamable HTTP, or SSE with --transport sse)")
    a.add_argument("--transport", choices=("streamable_http", "sse"), help="for --url (default streamable_http; "
                                                                           "a url ending in /sse: sse)")
    a.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                   help="an environment variable for the server, kept in the file (not for secrets)")
    a.add_argument("--secret", action="append", default=[], metavar="VAR",
                   help="an environment variable whose value is a secret: read from stdin, kept in the keyring")
    a.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="an HTTP header (--url)")
    a.add_argument("--secret-header", action="append", default=[], metavar="NAME",
                   help="an HTTP header whose value is a secret (e.g. Authorization): read from stdin, keyring")
    a.add_argument("--cwd", help="the folder the server runs in")
    a.add_argument("--timeout", type=float, metavar="SECONDS", help="how long one call may take (default 60)")
    a.add_argument("--replace", action="store_true", help="replace a server of that name")


class _OptionsError(Exception):
    pass


class _OptionsParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _OptionsError(message)


def _split(args: argparse.Namespace) -> list[str]:
    """The server's command out of what followed NAME; the options among it parsed into `args`."""
    rest = list(args.server_command)
    if "--" in rest:
        cut = rest.index("--")
        options, command = rest[:cut], rest[cut + 1:]
    elif rest and rest[0].startswith("-"):
        options, command = rest, []
    else:
        options, command = [], rest
    if options:
        parser = _OptionsParser(prog="byenatos mcp add", argument_default=argparse.SUPPRESS, add_help=False)
        _add_options(parser)
        try:
            given = parser.parse_args(options)
        except _OptionsError as e:
            raise BadRequestError(f"{e} (a server's own command and arguments go after `--`: "
                                  "byenatos mcp add NAME [OPTIONS] -- COMMAND ARGS)") from None
        for key, value in vars(given).items():
            current = getattr(args, key, None)
            setattr(args, key, current + value if isinstance(current, list) else value)
    return command


async def mcp(args: argparse.Namespace) -> int:
    if args.mcp_command == "serve":  # ByenatOS as an MCP server (app/cli/mcp_serve.py)
        from app.cli.mcp_serve import serve

        return await serve(args)
    host = _host()
    action = {"add": _add, "list": _list, "test": _test, "remove": _remove, "import": _import}[args.mcp_command]
    try:
        return await action(host, args)
    finally:
        await host.stop()


def _host() -> Any:
    from app.kernel.config import Paths
    from app.kernel.mcp.host import McpHost
    from app.kernel.security.secrets import SecretStore

    paths = Paths.default().ensure()
    return McpHost(paths, SecretStore(paths.secrets_file))


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequestError(f"{what} {item!r}: write it as NAME=VALUE")
        out[key] = value
    return out


def _read_secret(label: str) -> str:
    value = getpass.getpass(f"{label}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise BadRequestError(f"no value for {label} on standard input (one secret per line, in the order given)")
    return value


async def _add(host: Any, args: argparse.Namespace) -> int:
    from app.kernel.mcp.config import check_name, parse

    check_name(args.name)
    command = _split(args)
    if bool(command) == bool(args.url):
        raise BadRequestError("give the server's command after `--` (byenatos mcp add NAME -- COMMAND ARGS) "
                              "or its --url, one of the two")
    entry: dict[str, Any] = {"env": _pairs(args.env, "--env"), "headers": _pairs(args.header, "--header")}
    if command:
        entry |= {"command": command[0], "args": command[1:]}
    else:
        entry |= {"url": args.url, "transport": args.transport}
    if args.cwd:
        entry["cwd"] = args.cwd
    if args.timeout is not None:
        entry["timeout"] = args.timeout
    config = parse(args.name, {k: v for k, v in entry.items() if v not in (None, {}, [])})
    secret_env = {var: _read_secret(f"secret {var}") for var in args.secret}
    secret_headers = {h: _read_secret(f"header {h}") for h in args.secret_header}
    added = host.add(args.name, config, secret_env=secret_env, secret_headers=secret_headers, replace=args.replace)
    kept = len(secret_env) + len(secret_headers)
    print(f"added MCP server {args.name!r} ({added['kind']}): its tools are mcp__{args.name}__<tool>"
          + (f"; {kept} secret{'s' if kept != 1 else ''} kept in {host.secrets.describe()}" if kept else ""))
    print(f"try it: byenatos mcp test {args.name}")
    return 0


def _what(described: dict[str, Any]) -> str:
    config = described["config"]
    if "url" in config:
        return config["url"]
    return " ".join([config["command"], *config.get("args", [])])


async def _list(host: Any, args: argparse.Namespace) -> int:
    servers = host.servers()
    problem = host.store.problem
    offers = host.offers()
    if args.json:
        print(json.dumps({"servers": servers, "problem": problem,
                          "offers": [f.describe() for f in offers]}, indent=2))
        return 0
    if problem:
        print(f"byenatos: {problem}", file=sys.stderr)
    if servers:
        print(table(["NAME", "KIND", "SERVER", ""],
                    [[s["name"], s["kind"], _what(s), "disabled" if s["disabled"] else ""] for s in servers]))
    else:
        print("no MCP servers yet: byenatos mcp add NAME -- COMMAND ARGS (or --url URL)")
    for found in offers:
        if found.candidates:
            names = ", ".join(c.source_name for c in found.candidates)
            print(f"{found.label} has {len(found.candidates)} server(s) not added here ({names}): "
                  f"byenatos mcp import {found.app}")
    return 0


async def _test(host: Any, args: argparse.Namespace) -> int:
    report = await host.test(args.name, timeout=args.timeout)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    if not report["ok"]:
        message = report["problem"]["message"]
        first, _, rest = message.partition("\n")
        print(f"byenatos: {args.name} failed its test: {first}", file=sys.stderr)
        for line in rest.splitlines():
            print(f"  | {line}", file=sys.stderr)
        return 1
    server = report.get("server") or {}
    print(f"ok: {args.name} is {server.get('name', '?')} {server.get('version', '')}".rstrip()
          + f", started in {report['started_ms']:.0f} ms; {len(report['tools'])} tools, "
          f"{report['resources']} resources, {report['prompts']} prompts")
    if report["tools"]:
        print(table(["TOOL", "DESCRIPTION"],
                    [[t["name"], (t["description"].splitlines() or [""])[0][:80]] for t in report["tools"]]))
    return 0


async def _remove(host: Any, args: argparse.Namespace) -> int:
    await host.remove(args.name)
    print(f"removed MCP server {args.name!r} (and the secrets kept for it)")
    return 0


async def _import(host: Any, args: argparse.Namespace) -> int:
    offers = [host.find_offer(args.source)] if args.source else host.offers()
    if args.source:  # a file named: offer what it has that is not here yet
        have = host.sync()
        offers[0].candidates = [c for c in offers[0].candidates if args.replace or c.name not in have]
    if not any(f.candidates for f in offers):
        problems = [f"{f.label} ({f.path}): {f.problem}" for f in offers if f.problem]
        print("nothing to import: " + ("; ".join(problems) if problems else
                                        "no Claude Desktop or Cursor MCP servers that are not here already"))
        return 0
    for found in offers:
        if found.problem:
            print(f"{found.label} ({found.path}): {found.problem}")
            continue
        picked = [c for c in found.candidates
                  if not args.names or c.name in args.names or c.source_name in args.names]
        print(f"{found.label} ({found.path}):")
        for c in picked:
            what = (c.config.command or c.config.url) if c.config else ""
            secrets = len(c.secret_env) + len(c.secret_headers)
            notes = "; ".join(([c.problem] if c.problem else []) + c.notes
                              + ([f"{secrets} value(s) to the keyring"] if secrets else []))
            print(f"  {c.name:20} {what}" + (f"  ({notes})" if notes else ""))
        if not picked:
            continue
        if not args.yes:
            if not sys.stdin.isatty():
                print(f"  import them with: byenatos mcp import {found.app if found.app != 'file' else found.path} "
                      "--yes" + ("" if not args.names else " " + " ".join(args.names)))
                continue
            question = f"  import {'these' if len(picked) > 1 else 'it'}? [y/N] "
            answer = (await asyncio.to_thread(input, question)).strip().lower()
            if answer not in ("y", "yes"):
                continue
        done = host.import_from(found, [c.name for c in picked], replace=args.replace)
        for item in done["imported"]:
            print(f"  imported {item['name']!r}" + (f" ({item['secrets']} secret(s) in the keyring)"
                                                    if item["secrets"] else ""))
        for item in done["skipped"]:
            print(f"  skipped {item['name']!r}: {item['why']}")
    return 0
