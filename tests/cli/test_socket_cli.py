"""`byenatos socket` with no daemon running (it edits the saved sockets) and against a live one."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest
from tests.cli.test_cli import byenatos, one_readable_line


async def add_fake(home, fake, name: str = "srv") -> None:
    code, _, err = await byenatos(home, "models", "add", name, "--kind", "openai", "--url", fake.api_base)
    assert code == 0, err


async def test_show_swap_set_offline(home, openai_upstream):
    await add_fake(home, openai_upstream)
    code, out, _ = await byenatos(home, "socket", "show")
    assert code == 0 and "default" in out and "srv/gpt-fake-large" in out
    code, out, err = await byenatos(home, "socket", "swap", "gpt-fake-mini", "--alias", "code")
    assert code == 0, err
    assert "socket code: None → srv/gpt-fake-mini" in out
    code, out, err = await byenatos(home, "socket", "set", "code", "--fallbacks", "srv/gpt-fake-large",
                                    "--routing", "least_loaded")
    assert code == 0, err
    code, out, _ = await byenatos(home, "socket", "show", "--json")
    code_alias = next(a for a in json.loads(out)["aliases"] if a["alias"] == "code")
    assert code_alias["fallbacks"] == ["srv/gpt-fake-large"] and code_alias["routing"] == "least_loaded"
    code, out, _ = await byenatos(home, "socket", "remove", "code")
    assert code == 0


async def test_bad_socket_input_is_one_readable_line(home, openai_upstream):
    await add_fake(home, openai_upstream)
    for args, expected in (
        (["socket", "swap", "no-such-model"], "unknown model"),
        (["socket", "set", "default", "--routing", "psychic"], "unknown routing strategy"),
        (["socket", "set", "default"], "nothing to change"),
        (["socket", "remove", "default"], "cannot be removed"),
    ):
        code, _, err = await byenatos(home, *args)
        assert code == 1, (args, err)
        assert expected in one_readable_line(err)


@pytest.mark.parametrize("auto_return", [True, False], ids=["returns", "stays"])
async def test_show_tells_an_automatic_swap_from_who_when_and_why(home, monkeypatch, auto_return):
    """The ERROR trigger moves `default` in a kernel that then stops; `socket show`, with no
    daemon running, reads it from the saved sockets and the swap log."""
    from app.kernel.config import Paths, load_settings, save_settings
    from app.kernel.events import AutoSwapped
    from app.kernel.kernel import Kernel
    from app.kernel.security.secrets import BACKEND_ENV
    from tests.fakes.openai_upstream import FakeOpenAI
    from tests.fakes.upstream import Fault

    primary, spare = await FakeOpenAI().start(), await FakeOpenAI().start()
    try:
        await add_fake(home, primary, "a")
        await add_fake(home, spare, "b")
        paths = Paths.default()
        settings = load_settings(paths)
        settings.socket.auto_return = auto_return
        save_settings(paths, settings)
        monkeypatch.setenv(BACKEND_ENV, "file")
        async with Kernel() as kernel:
            await kernel.set_default_model("a/gpt-fake-large")
            kernel.socket.configure("default", fallbacks=["b/gpt-fake-large"])
            sub = kernel.events.subscribe()
            primary.fault = Fault(kind="status", status=503, message="model overloaded")
            await kernel.chat(ChatRequest(model="default", messages=[ChatMessage(role="user", content="hi")]))
            async with asyncio.timeout(10):
                told = await anext(e async for e in sub if isinstance(e, AutoSwapped))
        code, out, err = await byenatos(home, "socket", "show")
    finally:
        await primary.stop()
        await spare.stop()
    assert code == 0, err
    at = time.strftime("%H:%M:%S", time.localtime(told.ts))
    assert (f"socket default: swapped automatically from a/gpt-fake-large to b/gpt-fake-large at {at} because "
            "a/gpt-fake-large was failing: model overloaded (HTTP 503 from provider a)") in out
    if auto_return:
        assert "a/gpt-fake-large comes back once it has been healthy for 120 s" in out
    else:
        assert "it stays on b/gpt-fake-large (socket.auto_return is off)" in out
