"""Tables of the OpenAI Responses API: stored responses and their input items (previous_response_id chains).

Created by schema migration (see store/db.py). A response row holds the response object as it
was returned and the canonical messages its turn added (its input, then its output, without
its `instructions`, which OpenAI does not carry along a chain): the context of a response is
its ancestors' messages followed by its own, found by walking `previous`. `previous` is a
plain column, not a foreign key: deleting a response must not delete the ones that continued
from it.
"""

from __future__ import annotations

from peewee import CharField, FloatField, ForeignKeyField, IntegerField, SqliteDatabase
from peewee import Model as Table

from app.kernel.store.tables import JSONField


class ResponseRow(Table):
    id = CharField(primary_key=True)  # "resp_<hex>"
    app = CharField(null=True, index=True)  # the app that made it: no other app may read or continue it
    previous = CharField(null=True)  # previous_response_id
    created_at = FloatField()
    model = CharField()  # the model actually served (provider/name)
    body = JSONField()  # the response object (output, usage, status…) as returned
    messages = JSONField()  # canonical messages this turn added (input, then output)

    class Meta:
        table_name = "response"


class ResponseInputItemRow(Table):
    """One input item of a response, in order, with the id `input_items` lists it under."""

    response = ForeignKeyField(ResponseRow, on_delete="CASCADE", column_name="response_id")
    seq = IntegerField()
    item = JSONField()

    class Meta:
        table_name = "response_input_item"
        indexes = ((("response", "seq"), True),)


TABLES: list[type[Table]] = [ResponseRow, ResponseInputItemRow]


def migrate(db: SqliteDatabase) -> None:
    db.create_tables(TABLES)
