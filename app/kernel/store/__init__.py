"""SQLite store: one file, WAL, schema versioned by PRAGMA user_version."""

from app.kernel.store.db import open_database

__all__ = ["open_database"]
