"""Tables of the socket subsystem, created by schema migration (see store/db.py)."""

from __future__ import annotations

from peewee import CharField, FloatField, ForeignKeyField, IntegerField, SqliteDatabase
from peewee import Model as Table

from app.kernel.store.tables import JSONField


class SocketRow(Table):
    """One socket alias: the model plugged in, its pool, fallbacks and routing strategy."""

    alias = CharField(primary_key=True)
    model = CharField()
    pool = JSONField(default=list)
    fallbacks = JSONField(default=list)
    routing = CharField(default="round_robin")
    updated_at = FloatField()

    class Meta:
        table_name = "socket"


# ── sessions (sessions.py) ──
# One row per message rather than the history as one JSON blob: appending is one small
# insert (a blob would be rewritten whole on every turn, growing quadratically), each
# acknowledged message is its own committed row, and "answered by" sits beside it.


class SessionRow(Table):
    """A conversation with an alias, kept across swaps."""

    id = CharField(primary_key=True)  # "sess-<hex>"
    alias = CharField()
    app = CharField(null=True, index=True)  # the app that opened it, when known
    metadata = JSONField(default=dict)
    created_at = FloatField()
    updated_at = FloatField()
    closed_at = FloatField(null=True)

    class Meta:
        table_name = "session"


class SessionMessageRow(Table):
    """One message of a session, in order; assistant turns record the model that answered."""

    session = ForeignKeyField(SessionRow, on_delete="CASCADE", column_name="session_id")
    seq = IntegerField()  # 0, 1, 2… within the session
    message = JSONField()  # canonical OpenAI message dict (tool calls included)
    model = CharField(null=True)  # "<provider>/<name>" that produced an assistant message
    created_at = FloatField()

    class Meta:
        table_name = "session_message"
        indexes = ((("session", "seq"), True),)


TABLES: list[type[Table]] = [SocketRow, SessionRow, SessionMessageRow]


def migrate(db: SqliteDatabase) -> None:
    """Create this subsystem's tables. Until the first release this may still change;
    after it, new columns and tables go into a new migration appended in store/db.py."""
    db.create_tables(TABLES)
