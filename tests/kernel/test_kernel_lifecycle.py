"""Kernel.start()/stop() and the services built around them: a service read before start, or
kept across a stop, runs whenever the kernel runs (issue 19: the desktop app's tray read
`kernel.personal` before start, and personalization never began)."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.errors import ByenatosError
from app.kernel.kernel import Kernel
from app.kernel.personal.service import Caller
from app.kernel.security.secrets import BACKEND_ENV

USER = Caller.user()
NOTES = Caller("notes", frozenset({"hinata:write"}))


@pytest.fixture(autouse=True)
def file_secrets(home, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "file")


async def test_personal_read_before_start_runs_once_the_kernel_starts(home):
    kernel = Kernel()
    personal = kernel.personal  # what the tray did while the window was being built
    with pytest.raises(ByenatosError, match="not running"):
        await personal.ready()  # nothing runs before start, and it says so
    await kernel.start()
    try:
        assert kernel.personal is personal  # the same service, now running
        await asyncio.wait_for(personal.ready(), 30)
        await personal.add_rule("Answer briefly", True, USER)
        await personal.add({"highlight": "Moving the billing service to FastAPI"}, NOTES)
        psp = await personal.build_psp(USER, "billing")
        assert "Answer briefly" in psp.text and "billing service to FastAPI" in psp.text
    finally:
        await kernel.stop()


async def test_personal_service_set_before_start_begins_with_the_kernel(home):
    from app.kernel.personal.service import PersonalService

    kernel = Kernel()
    kernel.personal = PersonalService(kernel.paths, kernel.secrets, kernel.events, chat=kernel.chat)
    await kernel.start()
    try:
        await asyncio.wait_for(kernel.personal.ready(), 30)
        assert await kernel.personal.rules(USER) == []
    finally:
        await kernel.stop()


async def test_stop_then_start_serves_personal_memory_again(home):
    kernel = await Kernel().start()
    personal = kernel.personal
    await asyncio.wait_for(personal.ready(), 30)
    await personal.add_rule("Prefer pytest fixtures", False, USER)
    await kernel.stop()
    with pytest.raises(ByenatosError, match="not running"):
        await personal.ready()  # stopped with the kernel
    await kernel.start()
    try:
        assert kernel.personal is personal
        await asyncio.wait_for(personal.ready(), 30)
        assert [r["text"] for r in await personal.rules(USER)] == ["Prefer pytest fixtures"]
        await personal.add({"highlight": "Violin lesson on Thursdays"}, NOTES)
        assert (await personal.search(USER, text="violin"))["data"]
    finally:
        await kernel.stop()

