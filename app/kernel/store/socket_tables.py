"""Tables of the socket subsystem, created by schema migration (see store/db.py)."""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    SqliteDatabase,
    TextField,
)
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


# ── the swap log (manager.py, v7) ──


class SocketSwapRow(Table):
    """One swap of one alias: manual, automatic, or back to the user's model. The latest row of an
    alias says whether it is away from the user's model (`chosen` set) across restarts."""

    id = AutoField()
    ts = FloatField(index=True)  # unix seconds
    alias = CharField(index=True)
    from_model = CharField(null=True)
    to_model = CharField()
    strategy = CharField(default="graceful")
    trigger = CharField()  # manual, error, performance, resource, schedule, workload, recovery
    reason = TextField(default="")
    chosen = CharField(null=True)  # automatic swaps: the user's model the alias left
    chosen_fallbacks = JSONField(null=True)  # and its fallback chain, restored on the way back
    returns = BooleanField(default=False)  # the policy brings the user's model back once healthy

    class Meta:
        table_name = "socket_swap"


SWAP_LOG_TABLES: list[type[Table]] = [SocketSwapRow]


def add_swap_log(db: SqliteDatabase) -> None:
    """v7: the swap log (every swap, why, and what an automatic one left)."""
    db.create_tables(SWAP_LOG_TABLES)


def migrate(db: SqliteDatabase) -> None:
    """Create this subsystem's tables. Until the first release this may still change;
    after it, new columns and tables go into a new migration appended in store/db.py."""
    db.create_tables(TABLES)
