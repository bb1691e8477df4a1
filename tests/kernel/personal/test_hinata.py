"""HiNATA schema: every rule gives a field-level message; batches; ids; time zones."""

from __future__ import annotations

import pytest

from app.kernel.personal.hinata import (
    MAX_BATCH,
    HinataValidationError,
    content_hash,
    parse_time,
    validate_batch,
)


def problems(payload, source="app"):
    with pytest.raises(HinataValidationError) as e:
        validate_batch(payload, source=source)
    return e.value.problems


def test_a_valid_record_gets_source_id_and_time():
    (rec,) = validate_batch({"highlight": "  hello  ", "tag": ["#a", "b", "A"]}, source="notes")
    assert rec.source == "notes" and rec.id.startswith("notes:") and rec.timestamp.tzinfo is not None
    assert rec.highlight == "hello"
    assert rec.tag == ["a", "b"]  # '#' stripped, case-insensitive duplicates dropped
    assert rec.access == "private"


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({"highlight": "x" * 10_001}, "highlight", "10000"),
        ({"highlight": "a", "note": "x" * 50_001}, "note", "50000"),
        ({"highlight": "a", "access": "everyone"}, "access", "private"),
        ({"highlight": "a", "timestamp": "yesterday-ish"}, "timestamp", "datetime"),
        ({"highlight": "a", "timestamp": "2999-01-01T00:00:00Z"}, "timestamp", "tomorrow"),
        ({"highlight": "a", "tag": ["ok", "bad,tag"]}, "tag", "commas"),
        ({"highlight": "a", "tag": ["x" * 65]}, "tag", "64"),
        ({"highlight": "a", "tag": [str(i) for i in range(33)]}, "tag", "32"),
        ({"highlight": "a", "id": "has space"}, "id", "letters"),
        ({"highlight": "a", "colour": "red"}, "colour", "not permitted"),
        ({"note": ""}, "record", "highlight or a note"),
        ({"highlight": "a", "metadata": {"blob": "x" * 70_000}}, "metadata", "bytes"),
    ],
)
def test_each_bad_field_is_named(record, field, words):
    (p,) = problems(record)
    assert p["index"] == 0
    assert p["field"] == field
    assert words.lower() in p["message"].lower()


def test_every_problem_of_a_batch_is_reported_at_once():
    ps = problems([{"highlight": "ok"}, {"highlight": "a", "access": "x"}, "not an object", {"note": ""}])
    assert [p["index"] for p in ps] == [1, 2, 3]
    assert "record 1: access" in str(HinataValidationError(ps))


def test_batches_are_limited_and_not_empty():
    assert "limit is 100" in problems([{"highlight": "a"}] * (MAX_BATCH + 1))[0]["message"]
    assert "no records" in problems([])[0]["message"]
    assert len(validate_batch({"records": [{"highlight": "a"}] * MAX_BATCH}, source="s")) == MAX_BATCH


def test_an_app_cannot_submit_in_another_apps_name():
    (p,) = problems({"highlight": "a", "source": "someone-else"}, source="me")
    assert p["field"] == "source" and "me" in p["message"]


def test_duplicate_ids_in_one_batch_are_refused():
    ps = problems([{"id": "a1", "highlight": "x"}, {"id": "a1", "highlight": "y"}])
    assert ps[0]["field"] == "id" and "a1" in ps[0]["message"]


def test_naive_times_are_utc_and_identity_ignores_kernel_filled_time():
    (rec,) = validate_batch({"highlight": "a", "timestamp": "2024-05-01T10:00:00"}, source="s")
    assert rec.timestamp.utcoffset().total_seconds() == 0
    a = validate_batch({"id": "x", "highlight": "same"}, source="s")[0]
    b = validate_batch({"id": "x", "highlight": "same"}, source="s")[0]
    assert content_hash(a) == content_hash(b)  # the time the kernel filled in is not identity
    c = validate_batch({"id": "x", "highlight": "changed"}, source="s")[0]
    assert content_hash(a) != content_hash(c)


def test_query_times_parse_or_name_the_parameter():
    assert parse_time("2024-01-01", "since") == parse_time("2024-01-01T00:00:00Z", "since")
    with pytest.raises(HinataValidationError) as e:
        parse_time("last tuesday", "until")
    assert e.value.problems[0]["field"] == "until"
