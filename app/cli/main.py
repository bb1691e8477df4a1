"""Argument parsing and the one place errors become a readable line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from app import version
from app.kernel.errors import ByenatosError

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit, but in our voice
        self.print_usage(sys.stderr)
        print(f"byenatos: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (0: any free one), not {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="byenatos", description="ByenatOS: one local socket for every LLM.")
    p.add_argument("--version", action="version", version=f"byenatos {version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the kernel does")
    # The desktop app's gateway address, as `serve --host/--port` (own dests: a subcommand's
    # defaults would overwrite these).
    p.add_argument("--host", dest="app_host", metavar="HOST",
                   help="the desktop app's gateway: address to listen on (default 127.0.0.1 from settings)")
    p.add_argument("--port", dest="app_port", type=_port, metavar="PORT",
                   help="the desktop app's gateway: port to listen on (default 8484 from settings)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("serve", help="run the kernel and the local gateway headless")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1 from settings)")
    s.add_argument("--port", type=_port, help="port to listen on (default 8484 from settings; 0: any free one)")
    s.add_argument("--no-scan", action="store_true", help="don't look for models at start-up")

    m = sub.add_parser("models", help="list, scan, add and remove providers and models")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True, parser_class=_Parser)
    ml = msub.add_parser("list", help="the models ByenatOS knows")
    ml.add_argument("--json", action="store_true", help="machine-readable output")
    ml.add_argument("--providers", action="store_true", help="list providers instead of models")
    msub.add_parser("scan", help="find GGUF files, local servers and provider keys")
    ma = msub.add_parser("add", help="add a provider (e.g. `models add openai --key-stdin`)")
    ma.add_argument("provider", help="a preset (openai, anthropic, ollama, groq, …) or your own id")
    ma.add_argument("--kind", help="driver kind for a custom provider: openai, anthropic, ollama, litellm")
    ma.add_argument("--url", help="API base URL (presets know theirs)")
    key = ma.add_mutually_exclusive_group()
    key.add_argument("--key", help="API key (prefer --key-stdin: this one lands in your shell history)")
    key.add_argument("--key-stdin", action="store_true", help="read the API key from standard input")
    key.add_argument("--key-env", metavar="VAR", help="read the key from this environment variable at use")
    ma.add_argument("--model", action="append", default=[], metavar="NAME",
                    help="a model name to register by hand (repeatable)")
    ma.add_argument("--no-check", action="store_true", help="save without contacting the provider")
    mr = msub.add_parser("remove", help="remove a provider (and its models) or one model")
    mr.add_argument("id")
    md = msub.add_parser("default", help="show or set the model behind the `default` alias")
    md.add_argument("model", nargs="?")

    c = sub.add_parser("chat", help="chat in the terminal (streams the answer)")
    c.add_argument("prompt", nargs="*", help="ask once and exit; without it, an interactive chat")
    c.add_argument("-m", "--model", default="default", help="model id, name or alias (default: default)")
    c.add_argument("-s", "--system", help="a system prompt")
    c.add_argument("--max-tokens", type=int)
    c.add_argument("--temperature", type=float)

    from app.cli.socket import add_parser as add_socket_parser

    add_socket_parser(sub, _Parser)
    sub.add_parser("doctor", help="what was found, what is misconfigured, in plain words")
    from app.cli import hinata, psp

    hinata.add_parser(sub, _Parser)
    psp.add_parser(sub, _Parser)
    from app.cli import apps

    apps.add_parser(sub, _Parser)
    from app.cli import agents

    agents.add_parser(sub, _Parser)
    from app.cli import documents  # `docs`: folders indexed into memory, status, search

    documents.add_parser(sub, _Parser)
    from app.cli import approvals  # `approvals` and `tools` (permission rules, the audit of tool calls)

    approvals.add_parser(sub, _Parser)
    # the `mcp` group: add, list, test, remove, import, and serve (app/cli/mcp_serve.py)
    from app.cli import mcp

    mcp.add_parser(sub, _Parser)
    return p


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.command is None:
        return _run_app(parser, host=args.app_host, port=args.app_port)
    if args.command == "serve":  # `byenatos --port N serve` means what `byenatos serve --port N` does
        args.host = args.host if args.host is not None else args.app_host
        args.port = args.port if args.port is not None else args.app_port
    elif args.app_host is not None or args.app_port is not None:
        parser.error(f"--host and --port are for the desktop app and `serve`, not `{args.command}`")
    handler: Callable[[argparse.Namespace], Awaitable[int]]
    if args.command == "serve":
        from app.cli.serve import serve as handler
    elif args.command == "models":
        from app.cli.models import models as handler
    elif args.command == "chat":
        from app.cli.chat import chat as handler
    elif args.command == "hinata":
        from app.cli.hinata import hinata as handler
    elif args.command == "psp":
        from app.cli.psp import psp as handler
    elif args.command == "socket":
        from app.cli.socket import socket as handler
    elif args.command == "apps":
        from app.cli.apps import apps as handler
    elif args.command == "agents":
        from app.cli.agents import agents as handler
    elif args.command == "docs":
        from app.cli.documents import documents as handler
    elif args.command == "approvals":
        from app.cli.approvals import approvals as handler
    elif args.command == "tools":
        from app.cli.approvals import tools as handler
    elif args.command == "mcp":
        from app.cli.mcp import mcp as handler
    else:
        from app.cli.doctor import doctor as handler
    try:
        return asyncio.run(handler(args)) if args.command != "serve" else _run_serve(handler, args)
    except ByenatosError as e:
        print(f"byenatos: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `byenatos … | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not fail again, and exit the way other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run_serve(handler: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    try:
        import uvloop  # optional: faster loop for the headless daemon
    except ImportError:
        return asyncio.run(handler(args))
    return uvloop.run(handler(args))


def _no_display() -> str | None:
    """Why no window can be shown here, or None. Qt aborts the process (not an exception)
    when it finds no display, so this is checked before a QApplication exists."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return "no graphical display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


def _run_app(parser: argparse.ArgumentParser, *, host: str | None = None, port: int | None = None) -> int:
    """`byenatos` alone opens the desktop app when its extra is installed."""
    try:
        import PySide6.QtWidgets  # noqa: F401
        import qasync  # noqa: F401
    except ImportError:
        print("byenatos: the desktop app needs the gui extra: pip install 'byenatos[gui]' "
              "(or run the daemon headless with `byenatos serve`)", file=sys.stderr)
        parser.print_usage(sys.stderr)
        return EXIT_ERROR
    reason = _no_display()
    if reason:
        print(f"byenatos: cannot open the desktop app: {reason}; run the daemon headless with "
              "`byenatos serve`", file=sys.stderr)
        return EXIT_ERROR
    from app.ui.main import run as run_app

    try:
        return run_app(host=host, port=port)
    except ByenatosError as e:
        print(f"byenatos: {e}", file=sys.stderr)
        return EXIT_ERROR
