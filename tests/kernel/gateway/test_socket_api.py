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


async def test_an_automatic_swap_and_a_cooling_model_are_in_the_socket_state(http, kernel_with_openai,
                                                                             openai_upstream):
    from tests.fakes.upstream import Fault

    openai_upstream.fault = Fault(kind="status", status=503, message="model overloaded")
    chat = await http.post("/v1/chat/completions",
                           json={"model": "default", "messages": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 502 and "model overloaded (HTTP 503 from provider fake)" in chat.json()["error"]["message"]
    openai_upstream.fault = None
    await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini", trigger="error", returns=True,
                                         reason="fake/gpt-fake-large was failing: model overloaded")

    state = (await http.get("/api/socket")).json()
    [alias] = state["aliases"]
    auto = alias["auto_swapped"]
    assert (auto["from"], auto["to"], auto["trigger"], auto["returns"]) == (
        "fake/gpt-fake-large", "fake/gpt-fake-mini", "error", True)
    assert auto["reason"] == "fake/gpt-fake-large was failing: model overloaded" and auto["at"] > 0
    [cooling] = [d for d in state["deployments"] if d["model"] == "fake/gpt-fake-large"]
    assert cooling["health"] == "cooling" and cooling["until"] > 0
    assert state["auto_return"] == {"enabled": True, "after_s": 120.0}

    log = (await http.get("/api/socket/swaps", params={"limit": 5})).json()["data"]
    assert (log[0]["trigger"], log[0]["from_model"], log[0]["to_model"], log[0]["chosen"]) == (
        "error", "fake/gpt-fake-large", "fake/gpt-fake-mini", "fake/gpt-fake-large")
    assert (await http.get("/api/socket/swaps", params={"limit": 0})).status_code == 400


async def test_a_manual_swap_clears_the_automatic_one(http, admin, kernel_with_openai):
    await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini", trigger="performance", reason="slow")
    assert (await admin.post("/api/socket/swap", json={"model": "fake/gpt-fake-large"})).status_code == 200
    state = (await http.get("/api/socket")).json()
    assert state["aliases"][0]["auto_swapped"] is None
    log = (await http.get("/api/socket/swaps")).json()["data"]
    assert [r["trigger"] for r in log[:2]] == ["manual", "performance"]
