"""Tables of the personal subsystem.

Two databases hold them, on purpose:
- the kernel's database (migration v4, `migrate`) keeps only the *controls* — which apps get a
  PSP injected, the global pause, enhancement settings — nothing the user wrote;
- the personal database (`personal.sqlite3`, SQLCipher-encrypted with a key in the OS keyring,
  `migrate_personal`) keeps everything the user wrote and everything derived from it:
  HiNATA records, their full-text index, enhancements, Core rules, the embedding queue,
  Markdown import state and the audit of reads.
Schema changes after the first release go into new migration steps, never into edits here.
"""

from __future__ import annotations

from collections.abc import Callable

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    CharField,
    FloatField,
    IntegerField,
    NodeList,
    SqliteDatabase,
    TextField,
)
from peewee import Model as Table

from app.kernel.store.tables import JSONField


class AutoIncrementField(AutoField):
    """INTEGER PRIMARY KEY AUTOINCREMENT (as playhouse.sqlite_ext's, without importing it at start-up)."""

    def ddl(self, ctx):  # type: ignore[no-untyped-def]
        return NodeList((super().ddl(ctx), SQL("AUTOINCREMENT")))


# -- kernel database: controls --------------------------------------------------------------


class PspAppRow(Table):
    """Per-app PSP switch: an app gets a PSP only once it (or the user) opted in."""

    app_id = CharField(primary_key=True)
    inject = BooleanField(default=False)
    updated_at = FloatField()

    class Meta:
        table_name = "psp_app"


class PersonalSettingRow(Table):
    """Small key → JSON value settings of the personal subsystem (pause, enhancement mode)."""

    key = CharField(primary_key=True)
    value = JSONField()

    class Meta:
        table_name = "personal_setting"


TABLES: list[type[Table]] = [PspAppRow, PersonalSettingRow]


def migrate(db: SqliteDatabase) -> None:
    """v4 of the kernel database: the personal subsystem's controls."""
    db.create_tables(TABLES)


# -- personal database: the user's data (encrypted) -------------------------------------------


class RecordRow(Table):
    """A HiNATA record exactly as submitted (never rewritten by enhancement)."""

    # The FTS5 rowid and the vector id. AUTOINCREMENT: a key is never reused, so a late vector
    # deletion can never hit a newer record.
    key = AutoIncrementField()
    id = CharField(unique=True)
    source = CharField(index=True)
    access = CharField()
    ts = FloatField()  # `timestamp` as epoch seconds (sortable); the ISO text is in `timestamp`
    timestamp = CharField()
    highlight = TextField()
    note = TextField(default="")
    address = TextField(default="")
    tags = JSONField(default=list)
    raw_data = JSONField(null=True)
    metadata = JSONField(null=True)
    content_hash = CharField()
    tokens = IntegerField(default=0)  # rendered PSP line length, counted once at ingest
    importance = FloatField(default=0.0)  # copied from the enhancement for fast ranking
    core = BooleanField(default=False)  # tagged preference/rule/core/pinned: a Core-layer candidate
    uses = IntegerField(default=0)  # how often it went into a PSP (the access-frequency signal)
    last_used = FloatField(null=True)
    created_at = FloatField()
    updated_at = FloatField()

    class Meta:
        table_name = "hinata"
        indexes = ((("source", "ts"), False), (("access", "ts"), False), (("ts",), False))


class EnhancementRow(Table):
    """What the kernel derived from a record: kept beside it, so the original stays untouched."""

    key = IntegerField(primary_key=True)  # = RecordRow.key
    tags = JSONField(default=list)
    topics = JSONField(default=list)
    concepts = JSONField(default=list)
    importance = FloatField(default=0.0)
    method = CharField()  # "keywords" or "model:<model id>"
    updated_at = FloatField()

    class Meta:
        table_name = "hinata_enhancement"


class EmbedQueueRow(Table):
    """Vector work not done yet: `upsert` a record's vector or `delete` it from the index.

    Written in the same transaction as the record, so a crash between SQLite and chromadb
    leaves a queue entry that the catch-up worker finishes after the restart."""

    key = IntegerField(primary_key=True)  # = RecordRow.key
    op = CharField()  # "upsert" | "delete"
    source = CharField()  # vectors are partitioned by source app (see personal/vectors.py)
    queued_at = FloatField()

    class Meta:
        table_name = "embed_queue"


class EnhanceQueueRow(Table):
    key = IntegerField(primary_key=True)  # = RecordRow.key
    queued_at = FloatField()

    class Meta:
        table_name = "enhance_queue"


class CoreRuleRow(Table):
    """A stable preference or rule the user wrote (or pinned); the PSP's Core layer."""

    id = IntegerField(primary_key=True)
    text = TextField()
    pinned = BooleanField(default=False)
    position = IntegerField(default=0)
    created_at = FloatField()
    updated_at = FloatField()

    class Meta:
        table_name = "core_rule"


class ImportedFileRow(Table):
    """Markdown import state: a file is imported again only when its content changed."""

    path = CharField(primary_key=True)  # absolute path of the note
    record_id = CharField()
    content_hash = CharField()
    mtime = FloatField()

    class Meta:
        table_name = "imported_file"


class AuditRow(Table):
    """Every read of personal data: who, what, how many records. No record text."""

    id = IntegerField(primary_key=True)
    ts = FloatField(index=True)
    app = CharField(null=True)
    action = CharField()
    detail = JSONField(default=dict)

    class Meta:
        table_name = "personal_audit"


PERSONAL_TABLES: list[type[Table]] = [
    RecordRow,
    EnhancementRow,
    EmbedQueueRow,
    EnhanceQueueRow,
    CoreRuleRow,
    ImportedFileRow,
    AuditRow,
]

# Contentless FTS5 (the text already lives in `hinata`; no second copy), with deletes allowed.
# Columns: what the user wrote plus the enhancement's words, so a search for a topic finds it.
FTS_SQL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS hinata_fts USING fts5("
    "highlight, note, tags, extra, content='', contentless_delete=1, tokenize='porter unicode61')"
)


def _personal_v1(db: SqliteDatabase) -> None:
    db.create_tables(PERSONAL_TABLES)
    db.execute_sql(FTS_SQL)


def _personal_v2(db: SqliteDatabase) -> None:
    """`core` flag (+ index) so the Core layer's candidates need no scan of every record's tags.
    Stores created by v1 before the column existed get it here, backfilled from the tags."""
    columns = {c.name for c in db.get_columns("hinata")}
    if "core" not in columns:
        db.execute_sql("ALTER TABLE hinata ADD COLUMN core INTEGER NOT NULL DEFAULT 0")
        db.execute_sql(
            "UPDATE hinata SET core = 1 WHERE EXISTS (SELECT 1 FROM json_each(hinata.tags) "
            "WHERE lower(json_each.value) IN ('preference', 'rule', 'core', 'pinned'))"
        )
    db.execute_sql('CREATE INDEX IF NOT EXISTS "hinata_core_ts" ON "hinata" ("core", "ts")')


def _personal_v3(db: SqliteDatabase) -> None:
    """A covering index for the Working layer's candidates: ranking the last 90 days' records
    reads only this index, not the (encrypted, text-heavy) rows — 21 ms -> a few at 100k."""
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "hinata_standing" ON "hinata" ("ts", "importance", "uses", "source", "access")'
    )


def _personal_v4(db: SqliteDatabase, reindex: Callable[[SqliteDatabase], None] | None) -> None:
    """Full text for CJK: Chinese, Japanese and Korean runs are indexed as character bigrams
    (personal/textindex.py). The tokenizer is unchanged; rows holding CJK text are indexed
    again by the personal store's `reindex`, which knows how the text is prepared."""
    if reindex is not None:
        reindex(db)


PERSONAL_MIGRATIONS: list[Callable[..., None]] = [_personal_v1, _personal_v2, _personal_v3, _personal_v4]


def migrate_personal(db: SqliteDatabase, *, reindex: Callable[[SqliteDatabase], None] | None = None) -> int:
    """Bring the personal database to the newest schema. `reindex` re-indexes the full text of
    rows whose indexed form changed (v4); the store hands it in, the tables know no text rules."""
    current = int(db.execute_sql("PRAGMA user_version").fetchone()[0])
    for version in range(current, len(PERSONAL_MIGRATIONS)):
        with db.atomic():
            step = PERSONAL_MIGRATIONS[version]
            if step is _personal_v4:
                step(db, reindex)
            else:
                step(db)
            db.execute_sql(f"PRAGMA user_version = {version + 1}")
    return len(PERSONAL_MIGRATIONS)
