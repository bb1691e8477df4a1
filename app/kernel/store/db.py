"""Opening the database and bringing its schema up to date.

One SQLite file in WAL mode: readers never block the writer, and a committed transaction
survives the process being killed (synchronous=NORMAL is crash-safe in WAL mode; only a
power cut can lose the last commits). The schema version is `PRAGMA user_version`;
each migration moves it up by one inside a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from peewee import SqliteDatabase

from app.kernel.store import (
    agent_tables,
    personal_tables,
    responses_tables,
    security_tables,
    socket_tables,
    tables,
    tool_tables,
)

log = logging.getLogger(__name__)

PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "cache_size": -16000,  # 16 MB
}


def _v1(db: SqliteDatabase) -> None:
    db.create_tables([tables.ProviderRow, tables.ModelRow])


# Append only: never edit a released migration, add the next one. Each subsystem owns
# the module that defines its tables.
MIGRATIONS: list[Callable[[SqliteDatabase], None]] = [
    _v1,  # providers and models
    socket_tables.migrate,  # v2: socket aliases, sessions
    security_tables.migrate,  # v3: apps, tokens, audit log
    personal_tables.migrate,  # v4: HiNATA records, PSP
    security_tables.count_app_changes,  # v5: app_version, kept by triggers on app
    agent_tables.migrate,  # v6: agent processes, their logs, messages and tool-call journal
    socket_tables.add_swap_log,  # v7: the swap log (every swap, why, and what an automatic one left)
    tool_tables.migrate,  # v8: tool permissions, approval requests, the tool-call audit, undo copies
    responses_tables.migrate,  # v9: stored Responses API responses and their input items
]
ALL_TABLES = [*tables.ALL_TABLES, *socket_tables.TABLES, *security_tables.TABLES, *personal_tables.TABLES,
              *agent_tables.TABLES, *socket_tables.SWAP_LOG_TABLES, *tool_tables.TABLES,
              *responses_tables.TABLES]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: SqliteDatabase) -> int:
    return int(db.execute_sql("PRAGMA user_version").fetchone()[0])


def migrate(db: SqliteDatabase) -> int:
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        from app.kernel.errors import ConfigError

        raise ConfigError(
            f"database schema v{current} is newer than this ByenatOS understands (v{SCHEMA_VERSION}); "
            "upgrade ByenatOS or point BYENATOS_HOME elsewhere"
        )
    for version in range(current, SCHEMA_VERSION):
        with db.atomic():
            MIGRATIONS[version](db)
            db.execute_sql(f"PRAGMA user_version = {version + 1}")
        log.info("database migrated to schema v%d", version + 1)
    return SCHEMA_VERSION


def open_database(path: Path | str) -> SqliteDatabase:
    """Open (creating if needed) and migrate. Binds the table models to this database."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    db.bind(ALL_TABLES, bind_refs=False, bind_backrefs=False)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db
