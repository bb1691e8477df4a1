"""The CLI finds the running daemon through its runtime file, on whatever port it listens
(issue 19: with `byenatos serve --port 18484` running, `socket show` and `doctor` said it was not).
Real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import httpx

from app.kernel.config import Paths
from tests.cli.test_cli import byenatos
from tests.cli.test_socket_cli import add_fake

NOT_RUNNING = "(the daemon is not running"


async def start_daemon(home, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file"})
    line = await asyncio.wait_for(proc.stdout.readline(), 30)  # "ByenatOS gateway on …": it listens
    assert line.startswith(b"ByenatOS gateway on"), (line, await proc.stderr.read())
    return proc


async def stop_daemon(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)


def runtime_file(home) -> dict:
    return json.loads(Paths.default().runtime_file.read_text())  # BYENATOS_HOME is the `home` fixture's


async def test_socket_and_doctor_find_a_daemon_on_another_port(home, openai_upstream, unused_tcp_port):
    await add_fake(home, openai_upstream)  # the default socket holds srv/gpt-fake-large
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        info = runtime_file(home)
        assert (info["pid"], info["url"], info["kind"]) == (daemon.pid, url, "serve")
        code, out, err = await byenatos(home, "socket", "show")
        assert code == 0, err
        assert NOT_RUNNING not in out and "srv/gpt-fake-large" in out
        code, out, err = await byenatos(home, "socket", "swap", "srv/gpt-fake-mini")
        assert code == 0, err
        # the swap happened in the daemon's kernel: the next request it serves goes to the new model
        async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
            r = await http.post("/api/apps/register", json={"name": "probe", "scopes": ["chat"]})
            token = r.json()["token"]
            r = await http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                                json={"model": "default", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
        assert openai_upstream.requests[-1].body["model"] == "gpt-fake-mini"
        _, out, _ = await byenatos(home, "doctor")
        assert f"gateway at {url}: running (`byenatos serve`, pid {daemon.pid})" in out
    finally:
        assert await stop_daemon(daemon) == 0
    assert not Paths.default().runtime_file.exists()  # removed at stop
    code, out, _ = await byenatos(home, "socket", "show")
    assert code == 0 and NOT_RUNNING in out


def write_runtime_file(pid: int, port: int, started: float) -> None:
    path = Paths.default().runtime_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "url": f"http://127.0.0.1:{port}", "host": "127.0.0.1", "port": port,
                                "kind": "serve", "version": "0.1.0", "started": started}))


async def test_a_stale_runtime_file_is_ignored(home, openai_upstream, unused_tcp_port_factory):
    await add_fake(home, openai_upstream)
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()  # a daemon that crashed: its pid is gone
    silent = unused_tcp_port_factory()  # nothing listens here
    for pid, started in ((gone.pid, time.time()), (os.getpid(), time.time())):  # the second: alive, not serving
        write_runtime_file(pid, silent, started)
        code, out, err = await byenatos(home, "socket", "show")
        assert code == 0, err
        assert NOT_RUNNING in out
        _, out, _ = await byenatos(home, "doctor")
        assert "gateway: not running" in out
    # a daemon starts over a stale file and replaces it
    port = unused_tcp_port_factory()
    daemon = await start_daemon(home, "serve", "--port", str(port), "--no-scan")
    try:
        assert (runtime_file(home)["pid"], runtime_file(home)["port"]) == (daemon.pid, port)
    finally:
        assert await stop_daemon(daemon) == 0


async def test_a_second_daemon_for_the_same_home_is_refused(home, unused_tcp_port_factory):
    first_port, second_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    first = await start_daemon(home, "--port", str(first_port), "serve", "--no-scan")  # --port before serve, too
    try:
        assert runtime_file(home)["port"] == first_port
        code, _, err = await byenatos(home, "serve", "--port", str(second_port), "--no-scan")
        assert code == 1
        assert err.strip() == (f"byenatos: ByenatOS is already running for this home (`byenatos serve`, "
                               f"pid {first.pid}) on http://127.0.0.1:{first_port}; use that one, or stop it first")
        assert runtime_file(home)["pid"] == first.pid  # the refused one left the file alone
    finally:
        assert await stop_daemon(first) == 0
