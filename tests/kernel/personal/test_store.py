"""The encrypted personal store: ciphertext on disk, durable acknowledgements, one record per id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.kernel.errors import ConfigError, PermissionDeniedError
from app.kernel.personal.enhance import keywords
from app.kernel.personal.hinata import validate_batch
from app.kernel.personal.store import ADMIN, KEY_SECRET, PersonalStore, Visibility
from app.kernel.security.secrets import SecretStore
from app.kernel.store.personal_tables import PERSONAL_MIGRATIONS

SECRET_WORDS = "zebracorn marmalade 4471"


def _store(tmp_path: Path) -> tuple[PersonalStore, SecretStore]:
    secrets = SecretStore(tmp_path / "secrets.enc", backend="file")
    return PersonalStore.open(tmp_path / "personal.sqlite3", secrets), secrets


def _put(store: PersonalStore, *records: dict, source: str = "app") -> list[tuple[str, str]]:
    recs = validate_batch(list(records), source=source)
    return store.upsert(recs, {r.id: 10 for r in recs}, {r.id: keywords(r.highlight, r.note) for r in recs})


def test_nothing_the_user_wrote_is_readable_on_disk(tmp_path):
    store, secrets = _store(tmp_path)
    _put(store, {"id": "s1", "highlight": f"my {SECRET_WORDS}", "note": "private thoughts", "tag": ["diary"]})
    store.add_rule(f"rule {SECRET_WORDS}", True)
    assert store.search(ADMIN, text="zebracorn")[1] == 1  # searchable through the kernel
    store.db.execute_sql("PRAGMA wal_checkpoint(FULL)")
    for f in tmp_path.iterdir():
        if f.name.startswith("personal.sqlite3"):
            data = f.read_bytes()
            assert (
                b"zebracorn" not in data and b"marmalade" not in data and b"private thoughts" not in data
            ), f
    assert secrets.get(KEY_SECRET)  # the key lives in the secret store, not next to the data
    assert not any(b"zebracorn" in f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
    store.close()


def test_the_wrong_key_or_a_lost_key_is_a_clear_error(tmp_path):
    store, secrets = _store(tmp_path)
    _put(store, {"highlight": "x"})
    store.close()
    with pytest.raises(ConfigError, match="key"):
        PersonalStore(tmp_path / "personal.sqlite3", "0" * 64)
    secrets.delete(KEY_SECRET)
    with pytest.raises(ConfigError, match="key is not in the keyring"):
        PersonalStore.open(tmp_path / "personal.sqlite3", secrets)


def test_resubmitting_an_id_never_duplicates(tmp_path):
    store, _ = _store(tmp_path)
    assert _put(store, {"id": "a", "highlight": "one"}) == [("a", "created")]
    assert _put(store, {"id": "a", "highlight": "one"}) == [("a", "unchanged")]
    assert _put(store, {"id": "a", "highlight": "one, edited"}) == [("a", "updated")]
    assert store.count() == 1
    assert store.search(ADMIN, text="edited")[1] == 1
    assert store.search(ADMIN, text="one")[0][0]["highlight"] == "one, edited"


def test_another_apps_id_cannot_be_overwritten(tmp_path):
    store, _ = _store(tmp_path)
    _put(store, {"id": "mine", "highlight": "a"}, source="owner")
    with pytest.raises(PermissionDeniedError):
        _put(store, {"id": "mine", "highlight": "hijacked"}, source="intruder")
    assert store.get("mine")["highlight"] == "a"


def test_deleting_removes_the_record_from_the_full_text_index_and_queues_the_vector(tmp_path):
    store, _ = _store(tmp_path)
    _put(store, {"id": "gone", "highlight": "ephemeral pineapple"})
    assert store.fts_ranked("pineapple", ADMIN, 5)
    assert store.delete("gone", ADMIN)
    assert store.fts_ranked("pineapple", ADMIN, 5) == []
    assert store.get("gone") is None
    jobs = store.pending_vectors(10)
    assert [(j.op, j.source) for j in jobs] == [("delete", "app")]


def test_search_filters_and_pages(tmp_path):
    store, _ = _store(tmp_path)
    _put(
        store,
        *[
            {
                "id": f"r{i}",
                "highlight": f"note {i} about gardening",
                "tag": ["garden" if i % 2 else "misc"],
                "timestamp": f"2024-01-{i + 1:02d}T00:00:00Z",
            }
            for i in range(9)
        ],
    )
    rows, total = store.search(ADMIN, tag="garden", limit=2)
    assert total == 4 and [r["id"] for r in rows] == ["r7", "r5"]  # newest first
    rows, _ = store.search(ADMIN, tag="garden", limit=2, offset=2)
    assert [r["id"] for r in rows] == ["r3", "r1"]
    since = 1704412800.0  # 2024-01-05
    assert store.search(ADMIN, since=since)[1] == 5
    # Quotes and operators are words, never FTS syntax: no error, and AND-of-words semantics.
    assert store.search(ADMIN, text='gardening" OR "nonexistent')[1] == 0
    assert store.search(ADMIN, text="NEAR( AND")[1] == 0
    assert store.search(ADMIN, text="gardening 3")[1] == 1


def test_visibility_rules(tmp_path):
    store, _ = _store(tmp_path)
    _put(
        store,
        {"id": "p", "highlight": "alpha private"},
        {"id": "s", "highlight": "alpha shared", "access": "shared"},
        source="a",
    )
    own = Visibility("a")
    other = Visibility("b")
    other_reader = Visibility("b", shared=True)
    assert {k for k, _ in store.fts_ranked("alpha", own, 10)} == {1, 2}
    assert store.fts_ranked("alpha", other, 10) == []
    assert [store.by_keys([k])[k]["id"] for k, _ in store.fts_ranked("alpha", other_reader, 10)] == ["s"]
    assert store.search(other_reader, text="alpha")[1] == 1


def test_an_acknowledged_batch_survives_kill_9(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path.cwd())!r})
        from pathlib import Path
        from app.kernel.personal.enhance import keywords
        from app.kernel.personal.hinata import validate_batch
        from app.kernel.personal.store import PersonalStore
        from app.kernel.security.secrets import SecretStore
        root = Path({str(tmp_path)!r})
        store = PersonalStore.open(root / "personal.sqlite3", SecretStore(root / "secrets.enc", backend="file"))
        recs = validate_batch([{{"id": f"k{{i}}", "highlight": f"durable {{i}}"}} for i in range(100)], source="app")
        store.upsert(recs, {{}}, {{r.id: keywords(r.highlight) for r in recs}})
        print("acked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "acked"  # blocks until the batch is acknowledged
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store, _ = _store(tmp_path)
    assert store.count() == 100
    assert store.fts_ranked("durable", ADMIN, 200).__len__() == 100
    assert store.vector_backlog() == 100  # the catch-up queue survived too


def test_an_older_personal_schema_is_migrated_and_backfilled(tmp_path):
    store, secrets = _store(tmp_path)
    _put(
        store,
        {"id": "c1", "highlight": "always metric", "tag": ["Preference"]},
        {"id": "c2", "highlight": "x"},
    )
    for sql in (
        'DROP INDEX "hinata_core_ts"',
        'DROP INDEX "hinata_standing"',
        "ALTER TABLE hinata DROP COLUMN core",
        "PRAGMA user_version = 1",
    ):
        store.db.execute_sql(sql)
    store.close()
    store = PersonalStore.open(tmp_path / "personal.sqlite3", secrets)
    assert store.db.execute_sql("PRAGMA user_version").fetchone()[0] == len(PERSONAL_MIGRATIONS)
    assert [r["id"] for r in store.candidates(ADMIN, since=None, order="core", limit=10)] == ["c1"]


def test_a_store_from_before_cjk_bigrams_is_reindexed_on_open(tmp_path):
    store, secrets = _store(tmp_path)
    _put(store, {"id": "zh", "highlight": "下周二下午有钢琴课"}, {"id": "en", "highlight": "piano lesson"})
    key = store.get("zh")["key"]
    # the index as personal schema v3 wrote it: the Chinese run as one token
    store.db.execute_sql("DELETE FROM hinata_fts WHERE rowid = ?", (key,))
    store.db.execute_sql(
        "INSERT INTO hinata_fts(rowid, highlight, note, tags, extra) VALUES (?, ?, '', '', '')",
        (key, "下周二下午有钢琴课"),
    )
    store.db.execute_sql("PRAGMA user_version = 3")
    assert store.fts_ranked("钢琴课", ADMIN, 5) == []
    store.close()
    store = PersonalStore.open(tmp_path / "personal.sqlite3", secrets)
    assert [k for k, _ in store.fts_ranked("钢琴课", ADMIN, 5)] == [key]
    assert store.search(ADMIN, text="piano")[1] == 1  # rows without CJK were left as they were
    store.close()
