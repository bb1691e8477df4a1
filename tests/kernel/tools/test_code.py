"""run_code, the tool: its arguments, the limits from the settings, the report it hands back."""

from __future__ import annotations

import os

import pytest

from app.kernel.config import SandboxSettings, Settings
from app.kernel.tools.base import Risk, ToolError
from app.kernel.tools.builtin import builtin_tools
from app.kernel.tools.code import run_code
from app.kernel.tools.sandbox import ENV

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox's limits need a POSIX system")


async def test_runs_python_and_shell_and_reports_its_isolation(make_ctx, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    ctx = make_ctx()
    result = await run_code(ctx, {"language": "python", "code": "print(6 * 7)"})
    assert result["stdout"] == "42\n" and result["exit_code"] == 0 and result["message"] == "ok"
    assert result["isolation"] in ("bubblewrap", "unshare", "rlimits-only")
    shell = await run_code(ctx, {"language": "shell", "code": "cat | tr a-z A-Z", "stdin": "hello"})
    assert shell["stdout"] == "HELLO"


async def test_the_limits_come_from_the_settings(make_ctx, tool_home):
    settings = Settings(sandbox=SandboxSettings(isolation="rlimits-only", output_kb=1, cpu_s=1, wall_s=60))
    ctx = make_ctx(settings=settings)
    flood = await run_code(ctx, {"language": "python", "code": "print('y' * 5000)"})
    assert len(flood["stdout"]) == 1024 and flood["stdout_truncated"]
    assert flood["isolation"] == "rlimits-only" and flood["limits"]["output_kb"] == 1
    hog = await run_code(ctx, {"language": "shell", "code": "while :; do :; done"})
    assert hog["stopped"] == "cpu" and "CPU limit of 1 s" in hog["message"]
    # the run's folder was under ByenatOS's cache, and is gone
    assert list((tool_home[0].cache_dir / "sandbox").iterdir()) == []


async def test_a_call_may_ask_for_less_time_never_more(make_ctx):
    ctx = make_ctx(settings=Settings(sandbox=SandboxSettings(wall_s=5)))
    quick = await run_code(ctx, {"language": "shell", "code": "sleep 30", "timeout_s": 0.5})
    assert quick["stopped"] == "time" and "0.5 s" in quick["message"]
    with pytest.raises(ToolError, match="at most 5"):
        await run_code(ctx, {"language": "shell", "code": "true", "timeout_s": 60})


async def test_a_forced_isolation_that_is_missing_is_a_tool_error(make_ctx, tmp_path, monkeypatch):
    from app.kernel.tools.sandbox import isolation

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    isolation._bwrap_extra.cache_clear()
    try:
        ctx = make_ctx(settings=Settings(sandbox=SandboxSettings(isolation="bubblewrap")))
        with pytest.raises(ToolError, match="set to bubblewrap, which cannot run here"):
            await run_code(ctx, {"language": "python", "code": "print(1)"})
    finally:
        isolation._bwrap_extra.cache_clear()


@pytest.mark.parametrize(("args", "message"), [
    ({"code": "print(1)"}, "'language'"),
    ({"language": "ruby", "code": "puts 1"}, "'language'"),
    ({"language": "python"}, "'code'"),
    ({"language": "python", "code": "   "}, "'code'"),
    ({"language": "python", "code": "x", "stdin": 5}, "'stdin'"),
    ({"language": "python", "code": "x", "timeout_s": 0}, "'timeout_s'"),
    ({"language": "python", "code": "x", "timeout_s": True}, "'timeout_s'"),
])
async def test_bad_arguments(make_ctx, args, message):
    with pytest.raises(ToolError, match=message):
        await run_code(make_ctx(), args)


def test_run_code_is_code_risk_with_a_closed_schema():
    tool = builtin_tools().get("run_code")
    assert tool.risk is Risk.CODE
    assert tool.parameters["required"] == ["language", "code"]
    assert tool.parameters["additionalProperties"] is False
    assert tool.timeout_s > 3600  # above the longest wall clock the settings allow: the sandbox ends it first
