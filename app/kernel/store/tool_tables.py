"""Tables of the tools subsystem: permissions, approval requests, the audit of tool calls, undo copies.

Created by schema migration (see store/db.py).
"""

from __future__ import annotations

from peewee import SqliteDatabase

TABLES: list[type] = []


def migrate(db: SqliteDatabase) -> None:
    db.create_tables(TABLES)
