"""The command line, run as a user runs it: a real process, real files, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import pytest


async def byenatos(home, *args: str, stdin: bytes | None = None, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file", **(env or {})},
    )
    out, err = await proc.communicate(stdin)
    return proc.returncode, out.decode(), err.decode()


def one_readable_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("byenatos: ")
    return lines[0]


async def test_version(home):
    code, out, _ = await byenatos(home, "--version")
    assert code == 0 and out.startswith("byenatos 0.")


async def test_add_list_default_chat_remove(home, openai_upstream):
    code, out, err = await byenatos(home, "models", "add", "myserver", "--kind", "openai", "--url",
                                    openai_upstream.api_base)
    assert code == 0, err
    assert "2 models" in out
    code, out, _ = await byenatos(home, "models", "list")
    assert "myserver/gpt-fake-mini" in out and "myserver/gpt-fake-large" in out
    code, out, _ = await byenatos(home, "models", "default", "gpt-fake-mini")
    assert code == 0 and "myserver/gpt-fake-mini" in out
    code, out, err = await byenatos(home, "chat", "hello", "there")
    assert code == 0, err
    assert out.strip() == openai_upstream.reply_text
    assert openai_upstream.requests[-1].body["messages"][-1]["content"] == "hello there"
    code, out, _ = await byenatos(home, "models", "remove", "myserver")
    assert code == 0
    code, out, _ = await byenatos(home, "models", "list")
    assert "no models yet" in out


async def test_key_from_stdin_is_stored_secretly_and_a_refused_key_is_not_saved(home, openai_upstream):
    openai_upstream.api_key = "right-key"
    code, _, err = await byenatos(home, "models", "add", "srv", "--kind", "openai", "--url",
                                  openai_upstream.api_base, "--key-stdin", stdin=b"wrong-key\n")
    assert code == 1
    assert "key was refused" in one_readable_line(err)
    code, out, _ = await byenatos(home, "models", "list", "--providers")
    assert "srv" not in out
    code, _, err = await byenatos(home, "models", "add", "srv", "--kind", "openai", "--url",
                                  openai_upstream.api_base, "--key-stdin", stdin=b"right-key\n")
    assert code == 0, err
    assert openai_upstream.requests[-1].headers["Authorization"] == "Bearer right-key"
    for f in (home / "data").rglob("*"):
        if f.is_file():
            assert b"right-key" not in f.read_bytes(), f


@pytest.mark.parametrize("args,expected", [
    (["chat", "-m", "no-such-model", "hi"], "unknown model 'no-such-model'"),
    (["models", "add", "somewhere"], "not a known provider"),
    (["models", "add", "x", "--kind", "openai", "--url", "http://127.0.0.1:9/v1"], "provider not saved"),
    (["models", "add", "x", "--kind", "warp", "--url", "http://127.0.0.1:9/v1"], "unknown provider kind"),
    (["models", "remove", "ghost"], "neither a provider nor a model"),
    (["models", "default", "ghost"], "unknown model"),
])
async def test_bad_input_is_one_readable_line_and_nonzero(home, args, expected):
    code, _, err = await byenatos(home, *args)
    assert code == 1
    assert expected in one_readable_line(err)


async def test_usage_error_exits_2(home):
    code, _, err = await byenatos(home, "models", "frobnicate")
    assert code == 2 and "Traceback" not in err


async def test_serve_answers_and_stops_cleanly_on_sigterm(home, openai_upstream):
    await byenatos(home, "models", "add", "srv", "--kind", "openai", "--url", openai_upstream.api_base)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", "--port", "0", "--no-scan",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file"},
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "ByenatOS gateway on http://127.0.0.1:" in line
        url = line.split()[3]
        code, token, _ = await byenatos(home, "apps", "token")  # the gateway wants an app token
        assert code == 0
        auth = {"Authorization": f"Bearer {token.strip()}"}
        async with httpx.AsyncClient(trust_env=False, headers=auth) as c:
            r = await c.get(f"{url}/v1/models")
            assert r.status_code == 200
            assert "srv/gpt-fake-mini" in {m["id"] for m in r.json()["data"]}
            r = await c.post(f"{url}/v1/chat/completions",
                             json={"model": "srv/gpt-fake-mini", "messages": [{"role": "user", "content": "x"}]})
            assert r.json()["choices"][0]["message"]["content"] == openai_upstream.reply_text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert "Traceback" not in (await proc.stderr.read()).decode()


async def test_serve_on_a_busy_port_says_so(home):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        code, _, err = await byenatos(home, "serve", "--port", str(s.getsockname()[1]), "--no-scan")
    finally:
        s.close()
    assert code == 1
    assert "already in use" in one_readable_line(err)


async def test_doctor_reports_in_plain_words(home, openai_upstream):
    await byenatos(home, "models", "add", "srv", "--kind", "openai", "--url", openai_upstream.api_base)
    code, out, err = await byenatos(home, "doctor")
    assert "provider srv" in out and "reachable" in out
    assert "secrets: encrypted file" in out
    assert "Traceback" not in err
    assert code == 0, out + err


async def test_no_display_is_a_readable_line_not_a_qt_abort(home):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**env, "BYENATOS_HOME": str(home)})
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert "no graphical display" in one_readable_line(err.decode())
    assert "byenatos serve" in err.decode()


def test_a_reader_that_leaves_early_is_not_a_traceback(home):
    """`byenatos models list | head -1`: the pipe closes before the output is written."""
    import subprocess

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        listed = subprocess.run([sys.executable, "-m", "app", "models", "list"], stdout=write_end,
                                stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert b"Traceback" not in listed.stderr, listed.stderr.decode()
    assert listed.returncode == 141
