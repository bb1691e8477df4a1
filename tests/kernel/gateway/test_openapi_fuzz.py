"""The gateway against its own live `/openapi.json`: property-based fuzzing with schemathesis.

Each test starts the real gateway (kernel, fake OpenAI upstream, loopback HTTP), then runs
schemathesis' command line (`st run`, the way anyone would fuzz the API) over every operation
the document describes, with one kind of caller: the user's admin token, an app's token with
every other scope, no token at all. Checks on every answer:

- `not_a_server_error`: no 5xx (the fake upstream never fails, so no 502/503/504 is excused);
- `status_code_conformance`: the status is one the operation documents;
- `content_type_conformance`, `response_schema_conformance`: the body is what the document says,
  errors included — an error in the operation's own API format (OpenAI's or Anthropic's);
- `negative_data_rejection`: a request the schema forbids gets a 4xx, never served.

Every operation is fuzzed; where a generated request would break the rest of the run or
test nothing, it is steered, never dropped (each with its reason where it is done):

- GET /api/events never ends, nor does GET /api/agents/{pid}/events while its agent lives: their
  streams are read for EVENTS_READ_SECONDS, then checked.
- A generated pid on /api/agents/{pid}… names no agent (a 404 before anything else runs): pids
  often name the fixture's agents instead (one done, two waiting for a message, one suspended;
  a kill only two of them), so the lifecycle's 200s and 409s and the event stream are reached
  (fuzz_hooks.py).
- PATCH/DELETE /api/apps/{app_id} naming the fuzzing token's own app would throttle or revoke
  it (every later answer a 429 or 401): that id is pointed at a spare app (fuzz_hooks.py).
- POST /api/hinata/import `{"format": "markdown", "path": ...}` with the admin token would
  import the machine's notes: the path is pointed at a folder of two notes (fuzz_hooks.py).
- POST /api/documents/folders with the admin token would index whatever folder it names: the
  path is pointed at the same two notes; an MCP server added through POST /api/mcp/servers
  would run a generated command (or reach a generated url) when tested or called: its command
  is pointed at `false` and its url at a port nobody listens on (fuzz_hooks.py).
- A generated `model` on /v1 gets a 404 before anything else runs: bodies often name a served
  model instead (fuzz_hooks.py), so validation, the backend call and the stream are reached.
- GET /openapi.json itself: schemathesis loads it to start and leaves it out of the run.
- Not run: stateful chains, and repeated query parameters (see `_config`).

Generation is derandomized with a fixed seed, so a run is repeatable. `BYENATOS_FUZZ_EXAMPLES=500`
runs a deep pass locally (examples per operation in the fuzzing phase; the CI budget is a few);
`-s` prints what each pass covered.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.kernel.gateway.server import GatewayServer

REPO = Path(__file__).resolve().parents[3]
DEEP = int(os.environ.get("BYENATOS_FUZZ_EXAMPLES", "0"))  # 0: the CI budget below
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
SEED = 4484
# /api/events never ends: schemathesis reads an event stream until this many seconds pass
# (the gateway sends only its `: connected` comment when nothing happens).
EVENTS_READ_SECONDS = 0.5
APP_SCOPES = ["chat", "hinata:read", "hinata:write", "psp:read"]


@dataclass
class Caller:
    name: str
    token: str | None
    examples: int  # per operation, fuzzing phase
    coverage: bool = True  # schemathesis' deterministic boundary and wrong-type cases too
    protected_apps: list[str] = field(default_factory=list)


@dataclass
class Run:
    report: dict[str, Any]
    output: str
    returncode: int

    def summary(self) -> str:
        cases = self.report["test_cases"]
        ops = self.report["operations"]
        return (
            f"{ops['tested']}/{ops['selected']} operations, {cases['generated']} requests, "
            f"{cases['unique_failures']} unique failures, {len(self.report['errors'])} errors, "
            f"{self.report['running_time']:.1f} s"
        )

    def failures(self) -> str:
        start = self.output.find("FAILURES")
        end = self.output.find("SUMMARY")
        return self.output[start:end] if start >= 0 else self.output[-4000:]


@pytest.fixture
async def fuzzed(kernel_with_openai, tmp_path, monkeypatch):
    """The gateway with its personal store open, a spare app, a folder of Markdown notes and agents."""
    await kernel_with_openai.personal.ready()
    kernel_with_openai.apps.register("fuzz-spare", ["chat"])
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "trip.md").write_text("# Lisbon\nTrams and pastel de nata in May #travel\n")
    (notes / "shop.md").write_text("Oat milk, lemons\n")
    agents, killable = await _spawn_agents(kernel_with_openai)
    monkeypatch.setenv("BYENATOS_FUZZ_AGENTS", ",".join(map(str, agents)))  # `st run` reads them (fuzz_hooks.py)
    monkeypatch.setenv("BYENATOS_FUZZ_KILLABLE", ",".join(map(str, killable)))
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


CHATTY = 'name = "chatty"\ninstructions = "Chat."\nconversation = true\n'


async def _spawn_agents(kernel) -> tuple[list[int], list[int]]:
    """Agents for the pids the fuzzer names: one done, two waiting for a message, one suspended;
    (all of them, the ones it may kill: the done one and one of those waiting)."""
    from app.kernel.agents.process import ProcessState
    from app.kernel.agents.spec import parse_agent

    agents = kernel.agents
    done = await agents.spawn("assistant", "Say hello.")
    assert (await agents.wait(done.pid, timeout=30)).state is ProcessState.DONE
    chatty = []
    for _ in range(3):
        proc = await agents.spawn(parse_agent(CHATTY), "hello")
        await agents.wait(proc.pid, timeout=30, until=(ProcessState.WAITING_INPUT,))
        chatty.append(proc.pid)
    await agents.suspend(chatty[-1])
    return [done.pid, *chatty], [done.pid, chatty[0]]


async def fuzz(gateway: GatewayServer, kernel, tmp_path: Path, caller: Caller) -> Run:
    """`st run` over the live document, as `caller`; the JSON report and the printed output."""
    config = tmp_path / f"schemathesis-{caller.name}.toml"
    config.write_text(_config(caller))
    report_path = tmp_path / f"report-{caller.name}.json"
    models = ["default", *(m.id for m in kernel.list_models())]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.kernel.gateway.fuzz_hooks",
        "BYENATOS_FUZZ_MODELS": ",".join(models),
        "BYENATOS_FUZZ_NOTES": str(tmp_path / "notes"),
        "BYENATOS_FUZZ_DOCS": str(tmp_path / "notes"),  # the document index reads only these two notes
        "BYENATOS_FUZZ_MCP_COMMAND": shutil.which("false") or "false",  # an MCP server that only exits 1
        "BYENATOS_FUZZ_PROTECTED_APPS": ",".join(caller.protected_apps),
        "BYENATOS_FUZZ_SPARE_APP": "fuzz-spare",
        "NO_COLOR": "1",
    }
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{gateway.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
        "--no-color",
    ]
    if caller.token:
        args += ["--header", f"Authorization: Bearer {caller.token}"]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    output = out.decode(errors="replace")
    assert report_path.exists(), output[-4000:]
    return Run(json.loads(report_path.read_text()), output, proc.returncode or 0)


def _config(caller: Caller) -> str:
    phases = ["examples", "fuzzing"] + (["coverage"] if caller.coverage else [])
    return f"""
seed = {SEED}
request-timeout = 30
# Hypothesis' check that the smallest example is small: the HiNATA record schema (a pattern per
# tag, a highlight or a note) trips it on some seeds. It says nothing about the API.
suppress-health-check = ["large_base_example"]

[generation]
mode = "all"
max-examples = {caller.examples}
deterministic = true
database = "none"
# The token goes in the Authorization header; a generated one would only ever test the 401.
with-security-parameters = false

[phases]
examples.enabled = {_toml(True)}
coverage.enabled = {_toml("coverage" in phases)}
fuzzing.enabled = {_toml(True)}
# Stateful chains (create a record, then read it) are left to the route tests: with links
# between operations the run takes minutes.
stateful.enabled = false
# A repeated query parameter (`?limit=5&limit=x`) takes its first value, as in most servers;
# the document does not promise more.
coverage.generate-duplicate-query-parameters = false

[[operations]]
include-path = "/api/events"
request-timeout = {EVENTS_READ_SECONDS}

[[operations]]
include-path = "/api/agents/{{pid}}/events"
request-timeout = {EVENTS_READ_SECONDS}
"""


def _toml(value: bool) -> str:
    return "true" if value else "false"


def _check(run: Run, described: set[str]) -> None:
    print(f"\n{run.summary()}")  # what the pass covered, shown with -s
    assert run.report["complete"], run.output[-4000:]
    assert not run.report["errors"], run.output[-4000:]
    assert run.report["failures"] == [], run.failures()
    assert run.returncode == 0, run.output[-4000:]
    ops = run.report["operations"]
    # schemathesis leaves out the document's own URL (GET /openapi.json): it loaded it to start.
    assert ops["total"] == ops["selected"] == ops["tested"] == len(described - {"GET /openapi.json"}), ops


async def _described(gateway: GatewayServer) -> set[str]:
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as c:
        doc = (await c.get("/openapi.json")).json()
    return {f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops}


def _examples(ci: int) -> int:
    return DEEP or ci


def _timeout(ci_seconds: float) -> pytest.MarkDecorator:
    return pytest.mark.timeout(ci_seconds if not DEEP else ci_seconds + DEEP * 4)


@_timeout(120)
async def test_with_the_admin_token_every_answer_is_documented(fuzzed, kernel_with_openai, tmp_path):
    """Every operation, every branch an admin can reach: 2xx answers, 4xx refusals, streams."""
    caller = Caller(
        "admin",
        kernel_with_openai.apps.admin_token(),
        _examples(6),
        # The fuzzer must not throttle the token it fuzzes with (PATCH /api/apps/byenatos):
        # every later inference request would be a 429. A generated id naming it is
        # pointed at the spare app (fuzz_hooks.py).
        protected_apps=["byenatos"],
    )
    run = await fuzz(fuzzed, kernel_with_openai, tmp_path, caller)
    _check(run, await _described(fuzzed))


@_timeout(120)
async def test_with_an_app_token_every_answer_is_documented(fuzzed, kernel_with_openai, tmp_path):
    """An app with every scope but admin: its own data, and 403 in its format for the user's controls."""
    _, token = kernel_with_openai.apps.register("fuzz-app", APP_SCOPES)
    # The coverage phase's boundary and wrong-type bodies ran with the admin token: the handlers
    # are the same, so this pass fuzzes what differs, the answers an app gets.
    caller = Caller("app", token, _examples(10), coverage=bool(DEEP), protected_apps=["fuzz-app"])
    run = await fuzz(fuzzed, kernel_with_openai, tmp_path, caller)
    _check(run, await _described(fuzzed))


@_timeout(120)
async def test_without_a_token_every_answer_is_documented(fuzzed, kernel_with_openai, tmp_path):
    """No token: 401 in each API's format everywhere but the public routes and registration."""
    caller = Caller("anonymous", None, _examples(3), coverage=False)
    run = await fuzz(fuzzed, kernel_with_openai, tmp_path, caller)
    _check(run, await _described(fuzzed))
