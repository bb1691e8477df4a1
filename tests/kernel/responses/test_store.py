"""Stored responses on a real SQLite file (app.kernel.responses.store)."""

from __future__ import annotations

import pytest

from app.kernel.responses import InvalidFieldError, ResponseNotFoundError, ResponseStore, shell
from app.kernel.store import open_database


@pytest.fixture
async def store(tmp_path):
    db = open_database(tmp_path / "byenatos.sqlite3")
    store = ResponseStore()
    try:
        yield store
    finally:
        await store.close()
        db.close()


async def save(store: ResponseStore, rid: str, previous: str | None, text: str, app: str | None = "a",
               items: int = 1) -> None:
    response = shell(rid, "m", {}, previous=previous, store=True)
    await store.save(response, app=app, model="p/m",
               items=[{"id": f"{rid}-i{n}", "type": "message"} for n in range(items)],
               messages=[{"role": "user", "content": text}, {"role": "assistant", "content": text.upper()}])


async def test_a_chain_is_its_messages_oldest_first(store):
    await save(store, "r1", None, "one")
    await save(store, "r2", "r1", "two")
    await save(store, "r3", "r2", "three")
    assert [m["content"] for m in store.context("r3", app="a")] == ["one", "ONE", "two", "TWO", "three", "THREE"]
    assert [m["content"] for m in store.context("r2", app="a")] == ["one", "ONE", "two", "TWO"]


async def test_another_app_finds_nothing(store):
    await save(store, "r1", None, "one")
    for call in (lambda: store.get("r1", app="b"), lambda: store.context("r1", app="b"),
                 lambda: store.delete("r1", app="b"), lambda: store.input_items("r1", app="b")):
        with pytest.raises(ResponseNotFoundError):
            call()
    with pytest.raises(ResponseNotFoundError) as e:
        store.context("r1", app=None)
    assert e.value.param == "previous_response_id" and e.value.status == 404
    assert store.get("r1", app="a")["id"] == "r1"


async def test_a_chain_never_crosses_into_another_apps_responses(store):
    await save(store, "r1", None, "theirs", app="b")
    await save(store, "r2", "r1", "mine", app="a")  # a forged previous id: the other app's part is not read
    assert [m["content"] for m in store.context("r2", app="a")] == ["mine", "MINE"]


async def test_deleting_keeps_the_responses_that_continued_from_it(store):
    await save(store, "r1", None, "one")
    await save(store, "r2", "r1", "two")
    store.delete("r1", app="a")
    with pytest.raises(ResponseNotFoundError):
        store.get("r1", app="a")
    assert [m["content"] for m in store.context("r2", app="a")] == ["two", "TWO"]


async def test_input_items_pages_both_ways(store):
    await save(store, "r1", None, "x", items=5)
    ids = [f"r1-i{n}" for n in range(5)]
    page = store.input_items("r1", app="a", limit=2, order="asc")
    assert [i["id"] for i in page.data] == ids[:2] and page.has_more
    page = store.input_items("r1", app="a", limit=2, order="asc", after=ids[1])
    assert [i["id"] for i in page.data] == ids[2:4] and page.has_more
    page = store.input_items("r1", app="a", limit=10, order="desc", after=ids[1])
    assert [i["id"] for i in page.data] == ids[:1] and not page.has_more
    page = store.input_items("r1", app="a", limit=2, order="asc", before=ids[4])
    assert [i["id"] for i in page.data] == ids[2:4] and page.has_more
    assert page.to_dict()["first_id"] == ids[2] and page.to_dict()["last_id"] == ids[3]
    for kw, param in (({"limit": 0}, "limit"), ({"order": "up"}, "order"), ({"after": "nope"}, "after")):
        with pytest.raises(InvalidFieldError) as e:
            store.input_items("r1", app="a", **kw)
        assert e.value.param == param


async def test_saves_made_together_commit_together_and_are_all_durable(store, tmp_path):
    import asyncio
    import sqlite3

    await asyncio.gather(*(save(store, f"g{i}", None, f"n{i}") for i in range(50)))
    other = sqlite3.connect(tmp_path / "byenatos.sqlite3")  # a connection of its own: what is on disk
    try:
        assert other.execute("SELECT COUNT(*) FROM response").fetchone()[0] == 50
        assert other.execute("SELECT COUNT(*) FROM response_input_item").fetchone()[0] == 50
    finally:
        other.close()
