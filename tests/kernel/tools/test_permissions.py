"""Permission rules: every kind of rule, checked against the default it overrides (so each test
fails without its rule), the order in which rules win, durability, and bad input."""

from __future__ import annotations

import pytest

from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.store import open_database
from app.kernel.tools.base import Risk, Tool
from app.kernel.tools.permissions import Decision, Permissions

ALLOW, ASK, DENY = Decision.ALLOW, Decision.ASK, Decision.DENY


async def _noop(ctx, args):
    return "ok"


def tool(name: str, risk: Risk = Risk.READ, source: str = "builtin") -> Tool:
    return Tool(name, "a test tool", {"type": "object"}, _noop, risk=risk, source=source)


READ = tool("file_read")
WRITE = tool("file_write", Risk.WRITE)
CODE = tool("run_code", Risk.CODE)
NETWORK = tool("open_url", Risk.NETWORK)
MCP_TIME = tool("mcp__time__get_current_time", Risk.READ, "mcp:time")
MCP_GIT = tool("mcp__git__git_log", Risk.READ, "mcp:git")


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "byenatos.sqlite3")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def perms(db):
    return Permissions()


@pytest.mark.parametrize(("subject", "expected"), [
    (READ, ALLOW), (WRITE, ASK), (CODE, ASK), (NETWORK, ASK),
    (MCP_TIME, ASK),  # an MCP tool asks whatever risk its server declares
])
def test_defaults_follow_risk(perms, subject, expected):
    verdict = perms.decide("agent-worker", subject)
    assert verdict.decision is expected and verdict.rule is None


# (the rule, a tool it covers, one it must not cover); the covered tool's default differs from the rule
RULES = [
    (("agent-worker", "file_write", "allow"), WRITE, tool("file_delete", Risk.WRITE)),
    (("agent-worker", "file_read", "deny"), READ, tool("file_list")),
    (("agent-worker", "file_read", "ask"), READ, tool("file_list")),
    (("agent-worker", "mcp:time", "allow"), MCP_TIME, MCP_GIT),
    (("agent-worker", "mcp:*", "allow"), MCP_GIT, WRITE),
    (("agent-worker", "risk:write", "allow"), WRITE, CODE),
    (("agent-worker", "risk:code", "allow"), CODE, NETWORK),
    (("agent-worker", "risk:network", "deny"), NETWORK, CODE),
    (("agent-worker", "risk:read", "deny"), READ, WRITE),
    (("agent-worker", "*", "deny"), READ, None),
    (("*", "file_write", "allow"), WRITE, CODE),
]


@pytest.mark.parametrize(("rule", "covered", "other"), RULES, ids=[f"{r[0]}:{r[1]}={r[2]}" for r, _, _ in RULES])
def test_each_kind_of_rule_changes_what_it_names_and_nothing_else(perms, rule, covered, other):
    app, selector, decision = rule
    before = perms.decide("agent-worker", covered).decision
    assert before is not Decision(decision)  # the rule is what changes it
    other_before = perms.decide("agent-worker", other).decision if other else None
    perms.set(app, selector, decision)
    verdict = perms.decide("agent-worker", covered)
    assert verdict.decision is Decision(decision)
    assert verdict.rule is not None and verdict.rule.tool == selector
    if other is not None:
        assert perms.decide("agent-worker", other).decision is other_before


def test_a_rule_for_one_app_leaves_the_others_alone(perms):
    perms.set("agent-alice", "file_write", "allow")
    assert perms.decide("agent-alice", WRITE).decision is ALLOW
    assert perms.decide("agent-bob", WRITE).decision is ASK


def test_the_most_specific_selector_wins(perms):
    perms.set(None, "*", "deny")
    assert perms.decide("a", MCP_TIME).decision is DENY
    perms.set(None, "risk:read", "ask")
    assert perms.decide("a", MCP_TIME).decision is ASK
    perms.set(None, "mcp:*", "deny")
    assert perms.decide("a", MCP_TIME).decision is DENY
    perms.set(None, "mcp:time", "ask")
    assert perms.decide("a", MCP_TIME).decision is ASK
    perms.set(None, "mcp__time__get_current_time", "allow")
    assert perms.decide("a", MCP_TIME).decision is ALLOW
    # and taking the most specific away falls back to the next one
    perms.clear(None, "mcp__time__get_current_time")
    assert perms.decide("a", MCP_TIME).decision is ASK


def test_at_the_same_level_the_apps_rule_beats_every_apps(perms):
    perms.set("*", "file_write", "deny")
    perms.set("agent-worker", "file_write", "allow")
    assert perms.decide("agent-worker", WRITE).decision is ALLOW
    assert perms.decide("agent-other", WRITE).decision is DENY


def test_a_named_tool_for_every_app_beats_a_catch_all_for_one_app(perms):
    perms.set("*", "file_write", "deny")
    perms.set("agent-worker", "*", "allow")
    assert perms.decide("agent-worker", WRITE).decision is DENY
    assert perms.decide("agent-worker", CODE).decision is ALLOW


def test_rules_are_durable_and_setting_again_replaces(db):
    first = Permissions()
    first.set("agent-worker", "file_write", "allow")
    first.set("agent-worker", "file_write", "deny", note="changed my mind")
    first.set(None, "mcp:time", "allow")
    again = Permissions()  # as after a restart: read from SQLite
    assert again.decide("agent-worker", WRITE).decision is DENY
    assert again.decide("x", MCP_TIME).decision is ALLOW
    assert [(r.app, r.tool, r.decision.value, r.note) for r in again.rules()] == [
        ("*", "mcp:time", "allow", "set by the user"), ("agent-worker", "file_write", "deny", "changed my mind")]
    assert [r.tool for r in again.rules(app="agent-other")] == ["mcp:time"]
    again.clear("agent-worker", "file_write")
    assert Permissions().decide("agent-worker", WRITE).decision is ASK


def test_bad_rules_are_refused_in_words(perms):
    for selector in ("", "rm -rf", "mcp:", "risk:admin", "x" * 300, 12, "mcp:a b"):
        with pytest.raises(BadRequestError):
            perms.set(None, selector, "allow")
    with pytest.raises(BadRequestError, match="allow, ask, deny"):
        perms.set(None, "file_write", "maybe")
    with pytest.raises(BadRequestError, match="app"):
        perms.set("bad app!", "file_write", "allow")
    with pytest.raises(NotFoundError, match="no rule"):
        perms.clear(None, "file_write")
    assert perms.rules() == []
