"""run_code: Python or a shell script in the sandbox (app.kernel.tools.sandbox).

The limits and the isolation come from the settings (`sandbox`); a call may ask for less time,
never more. The result says what the program printed, how it ended, and which isolation it ran
under (`isolation`, `network_blocked`, `filesystem_confined`), so neither the model nor the user
is told the run was more confined than it was.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.kernel.config import SandboxSettings
from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, required_str
from app.kernel.tools.sandbox import LANGUAGES, Limits, run

MAX_CODE = 100_000
MAX_STDIN = 1_000_000


def limits_from(settings: SandboxSettings) -> Limits:
    return Limits(cpu_s=settings.cpu_s, wall_s=settings.wall_s, memory_mb=settings.memory_mb,
                  output_kb=settings.output_kb, max_processes=settings.max_processes, file_mb=settings.file_mb)


async def run_code(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    language = args.get("language")
    if language not in LANGUAGES:
        raise ToolError(f"argument 'language': one of {', '.join(LANGUAGES)}")
    code = required_str(args, "code", max_len=MAX_CODE)
    stdin = args.get("stdin")
    if stdin is not None and (not isinstance(stdin, str) or len(stdin) > MAX_STDIN):
        raise ToolError(f"argument 'stdin': a string of at most {MAX_STDIN} characters")
    settings = ctx.services.get("settings")
    sandbox = settings.sandbox if settings is not None else SandboxSettings()
    limits = limits_from(sandbox)
    timeout = args.get("timeout_s")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= limits.wall_s:
            raise ToolError(f"argument 'timeout_s': seconds, more than 0 and at most {limits.wall_s:g}")
        limits = replace(limits, wall_s=float(timeout))
    paths = ctx.services.get("paths")
    base = paths.cache_dir / "sandbox" if paths is not None else None
    result = await run(code, language, limits, isolation=sandbox.isolation, stdin=stdin, base=base)
    return result.to_dict()


def tools() -> list[Tool]:
    return [
        Tool("run_code", "Run a short Python program or shell script in a sandbox: a fresh empty folder, no "
             "network, limits on CPU, memory, time and output. Returns what it printed, its exit code, "
             "why it stopped if a limit ended it, and which isolation was used. Files it writes stay in "
             "its folder and are gone after the run (their names and sizes are listed).",
             {"type": "object", "properties": {
                 "language": {"type": "string", "enum": list(LANGUAGES)},
                 "code": {"type": "string", "description": "the program's source"},
                 "stdin": {"type": "string", "description": "what the program reads on standard input"},
                 "timeout_s": {"type": "number", "exclusiveMinimum": 0,
                               "description": "stop it sooner than the configured time limit"}},
              "required": ["language", "code"], "additionalProperties": False},
             run_code, risk=Risk.CODE, timeout_s=3_700.0),  # the sandbox's own wall clock ends it first
    ]
