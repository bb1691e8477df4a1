"""Tables of the security subsystem, created by schema migration (see store/db.py)."""

from __future__ import annotations

from peewee import Model as Table
from peewee import SqliteDatabase

TABLES: list[type[Table]] = []


def migrate(db: SqliteDatabase) -> None:
    """Create this subsystem's tables. Until the first release this may still change;
    after it, new columns and tables go into a new migration appended in store/db.py."""
    db.create_tables(TABLES)
