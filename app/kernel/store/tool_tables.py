"""Tables of the tools subsystem: permissions, approval requests, the audit of tool calls, undo copies.

Created by schema migration (see store/db.py).
"""

from __future__ import annotations

from peewee import AutoField, BooleanField, CharField, FloatField, IntegerField, SqliteDatabase, TextField
from peewee import Model as Table

from app.kernel.store.tables import JSONField


class ToolRuleRow(Table):
    """One permission rule the user set: for an app (or every app, "*") and a tool selector
    (a tool's name, `mcp:<server>`, `mcp:*`, `risk:<class>` or `*`), allow, ask or deny."""

    id = AutoField()
    app = CharField()  # an app id, or "*" for every app and agent
    tool = CharField()  # the selector
    decision = CharField()  # allow | ask | deny
    note = TextField(default="")  # where it came from ("set by the user", "approval 12: always")
    updated_at = FloatField()

    class Meta:
        table_name = "tool_rule"
        indexes = ((("app", "tool"), True),)


class ApprovalRow(Table):
    """One question put to the user: may this app run this tool call now?"""

    id = AutoField()
    key = CharField(index=True)  # the call's idempotency key ("<pid>:<step>:<index>")
    app = CharField()
    pid = IntegerField(null=True, index=True)
    tool = CharField()
    risk = CharField()
    source = CharField()
    # What the call would do, shown to the user while it is pending; replaced by None once it is
    # answered unless the user keeps tool-call content (gateway.audit_prompts).
    arguments = JSONField(null=True)
    args_sha256 = CharField()
    # pending | approved (once) | always | denied | expired (no answer in time) | cancelled (the
    # caller went away) | interrupted (ByenatOS stopped while it was pending)
    state = CharField(index=True)
    created_at = FloatField()
    expires_at = FloatField()
    answered_at = FloatField(null=True)

    class Meta:
        table_name = "tool_approval"


class ToolAuditRow(Table):
    """One tool call: who, which tool, a hash of its arguments, how it ended, how long it took."""

    id = AutoField()
    ts = FloatField(index=True)
    app = CharField(index=True)
    pid = IntegerField(null=True, index=True)
    key = CharField()
    tool = CharField(index=True)
    source = CharField()
    args_sha256 = CharField()
    outcome = CharField()  # ok | error | denied | timeout
    duration_ms = FloatField()
    detail = TextField(default="")  # the error or the reason for a denial, in words
    arguments = TextField(null=True)  # only with gateway.audit_prompts
    result = TextField(null=True)  # only with gateway.audit_prompts

    class Meta:
        table_name = "tool_audit"


class UndoRow(Table):
    """What a path was before one tool call changed it: a kept copy, or that it did not exist."""

    id = AutoField()
    pid = IntegerField(null=True, index=True)
    key = CharField()  # the call that changed it
    path = TextField()  # absolute
    kind = CharField()  # file | dir | symlink | missing
    copy = CharField(null=True)  # the copy's name under <data>/undo/<pid>/
    link = TextField(null=True)  # a symlink's target
    mode = IntegerField(null=True)
    created_dirs = JSONField(default=list)  # folders a change under a missing path will create
    at = FloatField()
    restored = BooleanField(default=False)

    class Meta:
        table_name = "tool_undo"
        indexes = ((("key", "path"), True),)


TABLES: list[type[Table]] = [ToolRuleRow, ApprovalRow, ToolAuditRow, UndoRow]


def migrate(db: SqliteDatabase) -> None:
    db.create_tables(TABLES)
