"""The ByenatOS tools against a real kernel: its socket, its personalization switch, its models."""

from __future__ import annotations

import pytest

from app.kernel.tools.base import Risk, ToolContext, ToolError
from app.kernel.tools.builtin import builtin_tools
from app.kernel.tools.system import (
    models_list,
    personalization_pause,
    personalization_resume,
    socket_show,
    socket_swap,
)


def ctx_of(kernel, tmp_path) -> ToolContext:
    return ToolContext(app="byenatos-assistant", scopes=frozenset(), workdir=tmp_path / "work", key="k",
                       services=kernel.tool_services())


async def test_show_and_swap_the_socket(kernel_with_openai, tmp_path):
    kernel = kernel_with_openai
    ctx = ctx_of(kernel, tmp_path)
    shown = await socket_show(ctx, {})
    default = next(a for a in shown["aliases"] if a["alias"] == "default")
    target = "fake/gpt-fake-large" if default["model"] != "fake/gpt-fake-large" else "fake/gpt-fake-mini"
    swapped = await socket_swap(ctx, {"model": target})
    assert swapped["alias"] == "default" and swapped["current"] == target and swapped["previous"] == default["model"]
    assert swapped["strategy"] == "graceful" and swapped["trigger"] == "manual"
    # the kernel itself serves the new model now
    assert kernel.default_model().id == target
    again = await socket_show(ctx, {})
    assert next(a for a in again["aliases"] if a["alias"] == "default")["model"] == target


async def test_a_swap_to_an_unknown_model_is_a_tool_error_in_words(kernel_with_openai, tmp_path):
    ctx = ctx_of(kernel_with_openai, tmp_path)
    before = kernel_with_openai.default_model().id
    with pytest.raises(ToolError, match="could not swap 'default' to 'no-such-model'"):
        await socket_swap(ctx, {"model": "no-such-model"})
    assert kernel_with_openai.default_model().id == before


@pytest.mark.parametrize(("args", "message"), [
    ({}, "'model'"), ({"model": "m", "strategy": "yolo"}, "'strategy'"), ({"model": "m", "alias": ""}, "'alias'"),
])
async def test_swap_arguments(kernel, tmp_path, args, message):
    with pytest.raises(ToolError, match=message):
        await socket_swap(ctx_of(kernel, tmp_path), args)


async def test_pause_and_resume_personalization(kernel, tmp_path):
    ctx = ctx_of(kernel, tmp_path)
    assert kernel.personal.paused is False
    assert await personalization_pause(ctx, {}) == {"paused": True, "changed": True}
    assert kernel.personal.paused is True
    assert await personalization_pause(ctx, {}) == {"paused": True, "changed": False}
    assert await personalization_resume(ctx, {}) == {"paused": False, "changed": True}
    assert kernel.personal.paused is False


async def test_list_models_with_filters(kernel_with_openai, tmp_path):
    ctx = ctx_of(kernel_with_openai, tmp_path)
    listed = await models_list(ctx, {})
    ids = {m["id"] for m in listed["models"]}
    assert {"fake/gpt-fake-mini", "fake/gpt-fake-large"} <= ids and listed["count"] == len(ids)
    mini = await models_list(ctx, {"query": "MINI"})
    assert [m["id"] for m in mini["models"]] == ["fake/gpt-fake-mini"]
    entry = mini["models"][0]
    assert entry["provider"] == "fake" and "chat" in entry["capabilities"] and "context_window" in entry
    local = await models_list(ctx, {"local": True})
    assert all(m["local"] for m in local["models"])
    with pytest.raises(ToolError, match="'local'"):
        await models_list(ctx, {"local": "yes"})


async def test_without_the_kernel_the_tools_say_so(tmp_path):
    ctx = ToolContext(app="a", scopes=frozenset(), workdir=tmp_path, key="k")
    for call in (socket_show, personalization_pause, models_list):
        with pytest.raises(ToolError, match="not available"):
            await call(ctx, {})


def test_risk_classes_of_the_byenatos_tools():
    registry = builtin_tools()
    assert {n: registry.get(n).risk for n in ("socket_show", "socket_swap", "personalization_pause",
                                              "personalization_resume", "models_list")} == {
        "socket_show": Risk.READ, "socket_swap": Risk.WRITE, "personalization_pause": Risk.WRITE,
        "personalization_resume": Risk.WRITE, "models_list": Risk.READ}
