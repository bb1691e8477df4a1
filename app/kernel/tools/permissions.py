"""Who may run which tool: the user's rules (allow, ask, deny), and the defaults by risk.

A rule is for one app (an agent's app is `agent-<name>`) or for every app (`*`), and names
tools by a *selector*:

    file_write               one tool, by its name (an MCP tool's too: mcp__time__get_current_time)
    mcp:time                 every tool of the MCP server `time`
    mcp:*                    every MCP tool
    risk:write               every tool of a risk class (read, write, code, network)
    *                        every tool

The most specific rule wins: a tool's name beats its server, which beats all MCP tools, which
beats its risk class, which beats `*`; at the same level a rule for the app beats one for every
app. With no rule, the default follows the risk: reading is allowed; writing, running code,
reaching the network, and every MCP tool whatever its declared risk (a server's own word is not
the user's), ask the user.

Rules live in SQLite (`tool_rule`) and in memory: `decide` runs before every tool call and reads
no database.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.store.tool_tables import ToolRuleRow
from app.kernel.tools.base import Risk, Tool

EVERY_APP = "*"
MAX_SELECTOR = 200
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a tool's name (base.Tool)
_SERVER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_APP = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
# The selectors and app ids as one pattern each (the API's description says the same).
SELECTOR_PATTERN = r"^(\*|mcp:\*|[A-Za-z0-9_-]{1,64}|mcp:[A-Za-z0-9_.-]{1,64}|risk:(read|write|code|network))$"
APP_PATTERN = r"^(\*|[A-Za-z0-9_.:-]{1,100})$"


class Decision(StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rule:
    app: str
    tool: str
    decision: Decision
    note: str = ""
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "tool": self.tool, "decision": self.decision.value, "note": self.note,
                "updated_at": self.updated_at}

    def words(self) -> str:
        who = "every app" if self.app == EVERY_APP else self.app
        return f"{self.decision.value} {self.tool} for {who}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `decide` found: the decision, and the rule it came from (None: the default)."""

    decision: Decision
    rule: Rule | None

    @property
    def why(self) -> str:
        return f"rule: {self.rule.words()}" if self.rule else "the default for its risk"


def check_selector(selector: Any) -> str:
    """A selector as a rule takes it, or BadRequestError saying what is accepted."""
    if not isinstance(selector, str) or not selector or len(selector) > MAX_SELECTOR:
        raise BadRequestError("tool: a tool's name, mcp:<server>, mcp:*, risk:<read|write|code|network> or *")
    if selector in ("*", "mcp:*") or _NAME.match(selector):
        return selector
    kind, _, rest = selector.partition(":")
    if kind == "mcp" and _SERVER.match(rest):
        return selector
    if kind == "risk":
        if rest in {r.value for r in Risk}:
            return selector
        raise BadRequestError(f"tool: unknown risk class {rest!r}; risk classes: "
                              f"{', '.join(r.value for r in Risk)}")
    raise BadRequestError(f"tool: {selector[:100]!r} is not a tool selector; give a tool's name, mcp:<server>, "
                          "mcp:*, risk:<read|write|code|network> or *")


def check_app(app: Any) -> str:
    if app is None or app == EVERY_APP:
        return EVERY_APP
    if not isinstance(app, str) or not _APP.match(app):
        raise BadRequestError("app: an app id (an agent's is agent-<name>), or * for every app")
    return app


def check_decision(value: Any) -> Decision:
    try:
        return Decision(value)
    except ValueError:
        raise BadRequestError(f"decision: one of allow, ask, deny, not {value!r}") from None


def selectors_of(tool: Tool) -> list[str]:
    """The selectors that name `tool`, most specific first."""
    out = [tool.name]
    if tool.source.startswith("mcp:"):
        out += [tool.source, "mcp:*"]
    return [*out, f"risk:{tool.risk.value}", "*"]


def default_for(tool: Tool) -> Decision:
    if tool.source.startswith("mcp:"):
        return Decision.ASK
    return Decision.ALLOW if tool.risk is Risk.READ else Decision.ASK


class Permissions:
    """The rules, kept in memory over their table (write-through)."""

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str], Rule] = {}
        self.load()

    def load(self) -> None:
        self._rules = {(r.app, r.tool): Rule(r.app, r.tool, Decision(r.decision), r.note, r.updated_at)
                       for r in ToolRuleRow.select()}

    def decide(self, app: str, tool: Tool) -> Verdict:
        for selector in selectors_of(tool):
            for who in (app, EVERY_APP):
                rule = self._rules.get((who, selector))
                if rule is not None:
                    return Verdict(rule.decision, rule)
        return Verdict(default_for(tool), None)

    def rules(self, *, app: str | None = None) -> list[Rule]:
        found = [r for r in self._rules.values() if app is None or r.app in (app, EVERY_APP)]
        return sorted(found, key=lambda r: (r.app != EVERY_APP, r.app, r.tool))

    def set(self, app: str | None, selector: str, decision: Decision | str, *, note: str = "set by the user"
            ) -> Rule:
        app, selector, decision = check_app(app), check_selector(selector), check_decision(decision)
        rule = Rule(app, selector, decision, note, time.time())
        ToolRuleRow.insert(app=app, tool=selector, decision=decision.value, note=note,
                           updated_at=rule.updated_at).on_conflict(
            conflict_target=[ToolRuleRow.app, ToolRuleRow.tool],
            update={ToolRuleRow.decision: decision.value, ToolRuleRow.note: note,
                    ToolRuleRow.updated_at: rule.updated_at}).execute()
        self._rules[(app, selector)] = rule
        return rule

    def clear(self, app: str | None, selector: str) -> Rule:
        app, selector = check_app(app), check_selector(selector)
        rule = self._rules.get((app, selector))
        if rule is None:
            who = "every app" if app == EVERY_APP else app
            raise NotFoundError(f"no rule for {selector} and {who}; `byenatos tools rules` lists them")
        ToolRuleRow.delete().where((ToolRuleRow.app == app) & (ToolRuleRow.tool == selector)).execute()
        del self._rules[(app, selector)]
        return rule
