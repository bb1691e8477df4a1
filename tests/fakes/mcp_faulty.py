"""A deliberately bad MCP server over stdio, for the host's fault tests (raw JSON-RPC, no SDK).

Run as `python -m tests.fakes.mcp_faulty [--hang-on-start] [--stubborn] [--banner TEXT]`. Its tools:
  echo {text}      answers the text (the control: the server works)
  crash            writes a line to stderr and exits with code 7 mid-call
  hang             never answers
  malformed        answers with a line that is not JSON
  bad_result       answers a JSON-RPC result that is not a CallToolResult
  huge {chars}     answers a text of that many characters
  grow             adds a tool `extra` and sends notifications/tools/list_changed
  fail             answers a result marked isError
--hang-on-start never answers the handshake; --stubborn ignores SIGTERM and the end of its stdin
(only SIGKILL ends it); --banner writes TEXT to stdout first (as a misconfigured server does).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

TOOLS = [
    {"name": n, "description": d, "inputSchema": s} for n, d, s in (
        ("echo", "Answer the text", {"type": "object", "properties": {"text": {"type": "string"}}}),
        ("crash", "Exit mid-call", {"type": "object"}),
        ("hang", "Never answer", {"type": "object"}),
        ("malformed", "Answer garbage", {"type": "object"}),
        ("bad_result", "Answer a wrong shape", {"type": "object"}),
        ("huge", "Answer a lot", {"type": "object", "properties": {"chars": {"type": "integer"}}}),
        ("grow", "Add a tool", {"type": "object"}),
        ("fail", "Answer an error result", {"type": "object"}),
    )
]


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def answer(id_, result: dict) -> None:
    send({"jsonrpc": "2.0", "id": id_, "result": result})


def main() -> None:
    argv = sys.argv[1:]
    stubborn = "--stubborn" in argv
    hang_on_start = "--hang-on-start" in argv
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--banner" in argv:
        sys.stdout.write(argv[argv.index("--banner") + 1] + "\n")
        sys.stdout.flush()
    tools = list(TOOLS)
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        method, id_, params = msg.get("method"), msg.get("id"), msg.get("params") or {}
        if method == "initialize":
            if hang_on_start:
                continue
            answer(id_, {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                         "capabilities": {"tools": {"listChanged": True}},
                         "serverInfo": {"name": "faulty", "version": "1"}})
        elif method == "tools/list":
            answer(id_, {"tools": tools})
        elif method == "ping":
            answer(id_, {})
        elif method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            if name == "echo":
                answer(id_, {"content": [{"type": "text", "text": str(args.get("text", ""))}]})
            elif name == "crash":
                sys.stderr.write("faulty: something broke, exiting\n")
                sys.stderr.flush()
                os._exit(7)
            elif name == "hang":
                continue
            elif name == "malformed":
                sys.stdout.write("{this is not json\n")
                sys.stdout.flush()
            elif name == "bad_result":
                answer(id_, {"content": "not a list"})
            elif name == "huge":
                answer(id_, {"content": [{"type": "text", "text": "x" * int(args.get("chars", 1000))}]})
            elif name == "grow":
                if not any(t["name"] == "extra" for t in tools):
                    tools.append({"name": "extra", "description": "Added later", "inputSchema": {"type": "object"}})
                send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
                answer(id_, {"content": [{"type": "text", "text": "grown"}]})
            elif name == "fail":
                answer(id_, {"content": [{"type": "text", "text": "the disk is full"}], "isError": True})
            else:
                send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32602, "message": f"unknown tool {name}"}})
        elif id_ is not None:
            send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": f"no method {method}"}})
    if stubborn:
        threading.Event().wait()  # stdin ended: stay anyway, until SIGKILL


if __name__ == "__main__":
    main()
