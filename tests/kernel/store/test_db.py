from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap

import pytest

from app.kernel.errors import ConfigError
from app.kernel.store.db import SCHEMA_VERSION, open_database, schema_version


def test_new_database_is_migrated_and_in_wal_mode(tmp_path):
    db = open_database(tmp_path / "x.sqlite3")
    assert schema_version(db) == SCHEMA_VERSION
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"provider", "model"} <= tables
    db.close()


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path):
    from app.kernel.store.tables import ProviderRow

    db = open_database(tmp_path / "x.sqlite3")
    ProviderRow.create(id="p", kind="openai", created_at=1.0)
    db.close()
    db = open_database(tmp_path / "x.sqlite3")
    assert ProviderRow.get_by_id("p").kind == "openai"
    db.close()


def test_newer_schema_is_refused_with_a_readable_error(tmp_path):
    path = tmp_path / "x.sqlite3"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.close()
    with pytest.raises(ConfigError, match="newer than this ByenatOS"):
        open_database(path)


async def test_acknowledged_write_survives_kill_9(tmp_path):
    """A provider added (and acknowledged) by a process that is then SIGKILLed is still there."""
    home = tmp_path / "home"
    script = textwrap.dedent(
        """
        import asyncio, os, signal, sys
        from app.kernel.kernel import Kernel
        async def main():
            k = await Kernel().start()
            k.registry.add_provider("survivor", "openai", base_url="http://127.0.0.1:1/v1")
            print("acknowledged", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
        env={"BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file", "PATH": "/usr/bin:/bin"},
    )
    out, _ = await proc.communicate()
    assert out.strip() == b"acknowledged"
    assert proc.returncode == -9
    con = sqlite3.connect(home / "data" / "byenatos.sqlite3")
    assert con.execute("SELECT kind FROM provider WHERE id='survivor'").fetchone() == ("openai",)
