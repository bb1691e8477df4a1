"""`byenatos socket` against a running daemon: the swap happens in the daemon's kernel."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.cli.test_cli import byenatos
from tests.cli.test_socket_cli import add_fake


async def test_swap_reaches_the_running_daemon(home, openai_upstream, unused_tcp_port):
    await add_fake(home, openai_upstream)
    env = {**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", "--port", str(unused_tcp_port), "--no-scan",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        await asyncio.wait_for(proc.stdout.readline(), 30)  # the "gateway on …" line: it listens
        settings = home / "config" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"gateway": {"port": unused_tcp_port}}))
        code, out, err = await byenatos(home, "socket", "swap", "srv/gpt-fake-mini")
        assert code == 0, err
        code, out, _ = await byenatos(home, "socket", "show", "--json")
        state = json.loads(out)
        assert state["aliases"][0]["model"] == "srv/gpt-fake-mini"
        assert state["aliases"][0]["last_swap"]["previous"] == "srv/gpt-fake-large"  # the daemon's own state
    finally:
        proc.terminate()
        await proc.wait()
