"""The tray agent: its menu lists models with the current one checked; choosing one swaps it."""

from __future__ import annotations

import pytest

from app.kernel.events import RequestFinished
from app.ui.tray import TrayAgent
from tests.ui.conftest import wait_signal


@pytest.fixture
def make_tray():
    made: list[TrayAgent] = []

    def make(runtime) -> TrayAgent:
        made.append(TrayAgent(runtime))
        return made[-1]

    yield make
    for tray in made:
        tray.close()


async def test_menu_lists_models_with_the_current_one_checked(runtime_with_openai, make_tray):
    tray = make_tray(runtime_with_openai)
    current = runtime_with_openai.kernel.default_model().id
    assert set(tray.model_actions) == {"fake/gpt-fake-mini", "fake/gpt-fake-large"}
    assert [mid for mid, a in tray.model_actions.items() if a.isChecked()] == [current]
    labels = [a.text() for a in tray.menu.actions()]
    for wanted in ("Open assistant", "Open ByenatOS", "Quit ByenatOS", "Pause personalization"):
        assert wanted in labels


async def test_choosing_a_model_in_the_tray_swaps_it_in_the_kernel(runtime_with_openai, make_tray):
    kernel = runtime_with_openai.kernel
    tray = make_tray(runtime_with_openai)
    target = next(mid for mid in tray.model_actions if mid != kernel.default_model().id)
    tray.model_actions[target].trigger()
    (text,) = await wait_signal(tray.message)
    assert text == f"Now serving {target.split('/', 1)[1]} · fake"  # the provider, too
    assert kernel.default_model().id == target
    assert tray.model_actions[target].isChecked()


async def test_a_failed_switch_says_why_and_keeps_the_check_on_the_real_model(runtime_with_openai, make_tray):
    kernel = runtime_with_openai.kernel
    tray = make_tray(runtime_with_openai)
    before = kernel.default_model().id
    tray.switch("fake/vanished")
    (text,) = await wait_signal(tray.message)
    assert text.startswith("Could not switch to fake/vanished")
    assert tray.model_actions[before].isChecked()


async def test_icon_state_follows_requests(runtime_with_openai, make_tray):
    tray = make_tray(runtime_with_openai)
    assert tray.state == "idle"
    bus = runtime_with_openai.kernel.events
    ev = dict(
        model="fake/gpt-fake-mini",
        provider="fake",
        app=None,
        stream=False,
        latency_ms=1.0,
        prompt_tokens=1,
        completion_tokens=1,
        cost=0.0,
    )
    bus.publish(RequestFinished(**ev, outcome="ok"))
    await wait_signal(runtime_with_openai.bridge.requestFinished)
    assert tray.state == "serving"
    bus.publish(RequestFinished(**ev, outcome="upstream_unavailable"))
    await wait_signal(runtime_with_openai.bridge.requestFinished)
    assert tray.state == "error" and "upstream_unavailable" in tray.icon.toolTip()


async def test_actions_emit_their_signals(runtime_with_openai, make_tray):
    tray = make_tray(runtime_with_openai)
    actions = {a.text(): a for a in tray.menu.actions()}
    got = []
    tray.openAssistant.connect(lambda: got.append("assistant"))
    tray.openWindow.connect(lambda: got.append("window"))
    tray.quitRequested.connect(lambda: got.append("quit"))
    for name in ("Open assistant", "Open ByenatOS", "Quit ByenatOS"):
        actions[name].trigger()
    assert got == ["assistant", "window", "quit"]


async def test_an_automatic_swap_is_a_tray_notification(runtime_with_openai, openai_upstream, make_tray):
    """Issue 19: the ERROR trigger moved the socket and nothing told the user."""
    import asyncio

    from app.kernel.canonical import ChatRequest
    from tests.fakes.upstream import Fault
    from tests.ui.conftest import expect_signal

    kernel = runtime_with_openai.kernel
    tray = make_tray(runtime_with_openai)
    primary = kernel.default_model().id
    fallback = next(mid for mid in tray.model_actions if mid != primary)
    kernel.socket.configure("default", fallbacks=[fallback])
    openai_upstream.fault = Fault(kind="status", status=503, message="overloaded, try later", times=3)
    said = expect_signal(tray.message)
    await kernel.chat(ChatRequest(model="default", messages=[{"role": "user", "content": "hi"}]))
    (text,) = await asyncio.wait_for(said, 10)
    old, new = (f"{m.split('/', 1)[1]} · fake" for m in (primary, fallback))
    assert text.startswith(f"Now serving {new} — swapped automatically from {old} at ")
    assert f"because {old} was failing: overloaded, try later" in text
    assert tray.model_actions[fallback].isChecked()
    assert tray.status_text() == f"serving {new}"
