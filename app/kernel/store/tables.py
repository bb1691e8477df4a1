"""peewee table models. Bound to a database at run time by `open_database`."""

from __future__ import annotations

import json
from typing import Any

from peewee import BooleanField, CharField, FloatField, ForeignKeyField, TextField
from peewee import Model as Table


class JSONField(TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class ProviderRow(Table):
    id = CharField(primary_key=True)  # slug chosen by the user or discovery: "openai", "ollama"
    kind = CharField()  # driver kind
    base_url = CharField(null=True)
    key_ref = CharField(null=True)  # name of the secret in the keyring; never the key itself
    options = JSONField(default=dict)
    enabled = BooleanField(default=True)
    origin = CharField(default="user")  # user | discovered | env
    created_at = FloatField()

    class Meta:
        table_name = "provider"


class ModelRow(Table):
    id = CharField(primary_key=True)  # "<provider>/<name>"
    provider = ForeignKeyField(ProviderRow, backref="models", on_delete="CASCADE")
    name = CharField()
    spec = JSONField()  # ModelSpec as JSON: the spec evolves faster than the schema
    origin = CharField(default="discovered")  # discovered | user
    last_seen = FloatField()

    class Meta:
        table_name = "model"


ALL_TABLES = [ProviderRow, ModelRow]
