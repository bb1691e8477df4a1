"""Tables of the security subsystem, created by schema migration (see store/db.py).

`app` holds the apps allowed to use the gateway: a token is never stored, only its SHA-256
(tokens are 256 random bits, so a fast hash is as good as a slow one and keeps auth O(1)).
`audit` holds one row per request; the prompt column stays empty unless the user turned
prompt auditing on.
"""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    FloatField,
    IntegerField,
    SqliteDatabase,
    TextField,
)
from peewee import Model as Table

from app.kernel.store.tables import JSONField


class AppRow(Table):
    id = CharField(primary_key=True)  # slug: "zed", "notes-sync"
    name = CharField()  # what the app called itself
    token_hash = CharField(unique=True)  # sha256 hex of the bearer token
    token_hint = CharField()  # the token's first characters, to tell tokens apart in a list
    scopes = JSONField(default=list)
    builtin = BooleanField(default=False)  # the user's own admin app (CLI and UI)
    created_at = FloatField()
    revoked_at = FloatField(null=True)
    rate_limit_rpm = IntegerField(null=True)  # requests per minute; None = unlimited
    daily_token_budget = IntegerField(null=True)  # prompt + completion tokens per UTC day
    daily_cost_budget = FloatField(null=True)  # USD per UTC day

    class Meta:
        table_name = "app"


class AuditRow(Table):
    id = AutoField()
    ts = FloatField(index=True)  # when the request finished (unix seconds)
    app = CharField(null=True, index=True)  # None: the kernel's own callers (CLI chat)
    endpoint = CharField(default="")  # "/v1/chat/completions", "kernel"
    model = CharField(default="")
    provider = CharField(default="")
    stream = BooleanField(default=False)
    outcome = CharField()  # "ok" or an error code
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    cost = FloatField(default=0.0)
    latency_ms = FloatField(default=0.0)
    prompt = TextField(null=True)  # only with settings.gateway.audit_prompts

    class Meta:
        table_name = "audit"
        indexes = ((("app", "ts"), False),)


TABLES: list[type[Table]] = [AppRow, AuditRow]


def migrate(db: SqliteDatabase) -> None:
    """Create this subsystem's tables. Until the first release this may still change;
    after it, new columns and tables go into a new migration appended in store/db.py."""
    db.create_tables(TABLES)


def count_app_changes(db: SqliteDatabase) -> None:
    """v5: `app_version.n` counts every change to the `app` table, whatever connection or
    process makes it (triggers), so a daemon following the store reloads its token cache only
    when apps changed, not whenever any table did (the audit writer commits every half second)."""
    db.execute_sql("CREATE TABLE app_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)")
    db.execute_sql("INSERT INTO app_version (id, n) VALUES (1, 0)")
    for event in ("INSERT", "UPDATE", "DELETE"):
        db.execute_sql(
            f"CREATE TRIGGER app_changed_on_{event.lower()} AFTER {event} ON app "
            "BEGIN UPDATE app_version SET n = n + 1 WHERE id = 1; END"
        )


def app_version(db: SqliteDatabase) -> int:
    return int(db.execute_sql("SELECT n FROM app_version WHERE id = 1").fetchone()[0])
