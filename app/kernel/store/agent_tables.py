"""Tables of the agent kernel, created by schema migration (see store/db.py).

The process table is ours; the durable engine (DBOS) keeps its own checkpoints of each run in
its own system database. A row here is what the user, the API and the UI see of an agent.
"""

from __future__ import annotations

from peewee import AutoField, CharField, FloatField, ForeignKeyField, IntegerField, SqliteDatabase, TextField
from peewee import Model as Table

from app.kernel.store.tables import JSONField


class AgentRow(Table):
    """One agent process: a kernel-run agent or an external program's run."""

    pid = AutoField()
    name = CharField(index=True)
    kind = CharField()  # kernel | external
    parent = IntegerField(null=True, index=True)  # the pid that spawned it
    app = CharField(index=True)  # the app identity its calls are accounted to
    state = CharField(index=True)
    priority = CharField(default="normal")  # scheduling class: interactive | normal | background
    spec = JSONField(default=dict)  # the agent file as it was when spawned (kernel-run agents)
    task = TextField(default="")  # what it was asked to do
    quotas = JSONField(default=dict)
    usage = JSONField(default=dict)
    reason = TextField(default="")  # why it is suspended, failed or killed
    result = TextField(null=True)  # the final answer
    run_key = CharField(null=True, index=True)  # external agents: the run id its calls carry
    created_at = FloatField()
    started_at = FloatField(null=True)
    ended_at = FloatField(null=True)

    class Meta:
        table_name = "agent"

class AgentLogRow(Table):
    """One entry of an agent's log: a state change, an LLM call, a tool call, a page-out…"""

    agent = ForeignKeyField(AgentRow, on_delete="CASCADE", column_name="pid")
    seq = IntegerField()
    at = FloatField()
    kind = CharField()
    summary = TextField()
    detail = JSONField(default=dict)

    class Meta:
        table_name = "agent_log"
        indexes = ((("agent", "seq"), True),)

class AgentMessageRow(Table):
    """A message sent to an agent; runs read them in order (durable before it is acknowledged)."""

    agent = ForeignKeyField(AgentRow, on_delete="CASCADE", column_name="pid")
    seq = IntegerField()
    at = FloatField()
    sender = CharField(default="user")
    content = TextField()

    class Meta:
        table_name = "agent_message"
        indexes = ((("agent", "seq"), True),)

class AgentToolCallRow(Table):
    """The journal of tool calls by idempotency key: a call that finished is answered from here
    if its run is replayed before the engine recorded it."""

    key = CharField(primary_key=True)  # "<pid>:<step>:<index>"
    agent = ForeignKeyField(AgentRow, on_delete="CASCADE", column_name="pid")
    name = CharField()
    arguments = JSONField(default=dict)
    status = CharField()  # started | finished
    result = JSONField(null=True)
    started_at = FloatField()
    finished_at = FloatField(null=True)

    class Meta:
        table_name = "agent_tool_call"

TABLES: list[type[Table]] = [AgentRow, AgentLogRow, AgentMessageRow, AgentToolCallRow]


def migrate(db: SqliteDatabase) -> None:
    db.create_tables(TABLES)

