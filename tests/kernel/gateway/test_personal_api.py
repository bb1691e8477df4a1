"""The personal-data API (/api/hinata, /api/psp) through the real gateway: what fuzzing it found."""

from __future__ import annotations

import pytest

TOO_BIG = 2**70  # more than SQLite's 64-bit INTEGER


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/psp/audit", {"limit": 1001}),  # found by the fuzzer: above the documented maximum, served
        ("/api/psp/audit", {"limit": 0}),
        ("/api/psp/audit", {"limit": TOO_BIG}),  # reached SQLite, which cannot hold it
        ("/api/psp/preview", {"budget": -1}),  # found by the fuzzer: a negative token budget, served
        ("/api/psp/preview", {"budget": TOO_BIG}),
        ("/api/hinata", {"offset": TOO_BIG}),
        ("/api/hinata", {"limit": "ten"}),
        ("/api/hinata", {"limit": ""}),  # found by the fuzzer: an empty value was taken as no limit
        ("/api/psp/preview", {"budget": ""}),
        ("/api/hinata", {"access": ""}),  # found by the fuzzer: served as if no access was asked for
    ],
)
async def test_out_of_range_numbers_in_the_query_are_a_400(admin, path, params):
    r = await admin.get(path, params=params)
    assert r.status_code == 400, r.text
    assert next(iter(params)) in r.json()["error"]["message"]


async def test_in_range_numbers_in_the_query_are_served(admin):
    assert (await admin.get("/api/psp/audit", params={"limit": 1000})).status_code == 200
    assert (await admin.get("/api/psp/preview", params={"budget": 500})).json()["budget"] == 500
    assert (await admin.get("/api/hinata", params={"offset": 2**63 - 1})).json()["data"] == []


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_core_rule_id_beyond_any_row_is_a_404(admin, method):
    r = await admin.request(method, f"/api/psp/rules/{TOO_BIG}", json={"pinned": True})
    assert r.status_code == 404 and "Core rule" in r.json()["error"]["message"]


async def test_settings_refuse_an_unknown_model_and_change_nothing(admin, kernel_with_openai):
    """Found by the fuzzer: embedding_model "0" was saved; the vector index then failed in the background."""
    r = await admin.patch("/api/psp/settings", json={"paused": True, "embedding_model": "nope"})
    assert r.status_code == 404 and "fake/gpt-fake-mini" in r.json()["error"]["message"]
    r = await admin.patch("/api/psp/settings", json={"enhance_model": "nope"})
    assert r.status_code == 404
    settings = (await admin.get("/api/psp/settings")).json()
    assert settings["paused"] is False and settings["embedding_model"] == "local"
    assert settings["enhance_model"] == "default"
    assert kernel_with_openai.personal.vector_error is None


async def test_settings_are_changed_all_together_or_not_at_all(admin):
    r = await admin.patch("/api/psp/settings", json={"paused": True, "psp_max_tokens": 1})
    assert r.status_code == 400 and "psp_max_tokens" in r.json()["error"]["message"]
    assert (await admin.get("/api/psp/settings")).json()["paused"] is False
    r = await admin.patch("/api/psp/settings", json={"paused": True, "enhance_model": "fake/gpt-fake-mini"})
    assert (
        r.status_code == 200
        and r.json()["paused"] is True
        and r.json()["enhance_model"] == "fake/gpt-fake-mini"
    )


@pytest.mark.parametrize("record_id", ["https://example.com/a#b", "notes/2024/lisbon.md"])
async def test_a_record_whose_id_has_a_slash_can_be_read_and_forgotten(admin, record_id):
    r = await admin.post("/api/hinata", json={"id": record_id, "note": "trams in Lisbon"})
    assert r.status_code == 201, r.text
    encoded = record_id.replace("/", "%2F").replace("#", "%23")
    r = await admin.get(f"/api/hinata/{encoded}")
    assert r.status_code == 200 and r.json()["id"] == record_id
    assert (await admin.delete(f"/api/hinata/{encoded}")).json() == {"deleted": record_id}
    assert (await admin.get(f"/api/hinata/{encoded}")).status_code == 404
