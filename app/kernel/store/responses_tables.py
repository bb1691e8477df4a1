"""Tables of the OpenAI Responses API: stored responses and their input items (previous_response_id chains).

Created by schema migration (see store/db.py).
"""

from __future__ import annotations

from peewee import SqliteDatabase

TABLES: list[type] = []


def migrate(db: SqliteDatabase) -> None:
    db.create_tables(TABLES)
