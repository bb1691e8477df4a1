"""/api/socket through the real gateway: read with `chat`, change with `admin`, errors in JSON."""

from __future__ import annotations


async def test_read_needs_a_token_and_shows_the_sockets(anon, http):
    assert (await anon.get("/api/socket")).status_code == 401
    r = await http.get("/api/socket")
    assert r.status_code == 200
    state = r.json()
    assert state["aliases"][0]["alias"] == "default"
    assert state["aliases"][0]["model"] == "fake/gpt-fake-large"


async def test_swap_needs_admin_and_takes_effect_at_once(http, admin, openai_upstream):
    body = {"model": "gpt-fake-mini", "strategy": "immediate"}
    assert (await http.post("/api/socket/swap", json=body)).status_code == 403
    r = await admin.post("/api/socket/swap", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["current"] == "fake/gpt-fake-mini" and r.json()["strategy"] == "immediate"
    chat = await http.post("/v1/chat/completions",
                           json={"model": "default", "messages": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 200
    assert openai_upstream.requests[-1].body["model"] == "gpt-fake-mini"


async def test_patch_and_delete_an_alias(admin):
    assert (await admin.post("/api/socket/swap", json={"alias": "code", "model": "gpt-fake-mini"})).status_code == 200
    r = await admin.patch("/api/socket/code", json={"fallbacks": ["fake/gpt-fake-large"], "routing": "lowest_cost"})
    assert r.status_code == 200 and r.json()["fallbacks"] == ["fake/gpt-fake-large"]
    assert (await admin.delete("/api/socket/code")).status_code == 204
    assert (await admin.delete("/api/socket/code")).status_code == 404


async def test_bad_socket_requests_are_4xx_with_a_message(admin):
    cases = [
        (admin.post("/api/socket/swap", json={"model": "nope"}), 404, "unknown model"),
        (admin.post("/api/socket/swap", json={"model": "gpt-fake-mini", "strategy": "yolo"}), 400, "strategy"),
        (admin.post("/api/socket/swap", content=b"{not json", headers={"content-type": "application/json"}),
         400, ""),
        (admin.patch("/api/socket/default", json={"routing": "psychic"}), 400, "routing"),
        (admin.delete("/api/socket/default"), 400, "cannot be removed"),
    ]
    for call, status, words in cases:
        r = await call
        assert r.status_code == status, (r.status_code, r.text)
        assert words in r.json()["error"]["message"]
