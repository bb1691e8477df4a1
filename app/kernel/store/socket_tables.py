"""Tables of the socket subsystem, created by schema migration (see store/db.py)."""

from __future__ import annotations

from peewee import CharField, FloatField, SqliteDatabase
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


TABLES: list[type[Table]] = [SocketRow]


def migrate(db: SqliteDatabase) -> None:
    """Create this subsystem's tables. Until the first release this may still change;
    after it, new columns and tables go into a new migration appended in store/db.py."""
    db.create_tables(TABLES)
