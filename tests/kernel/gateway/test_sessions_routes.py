"""/api/sessions through the real gateway over the fake OpenAI upstream."""

from __future__ import annotations

import json

import httpx
import pytest


@pytest.fixture
async def other(gateway, kernel_with_openai):
    """A client of another app, with the `chat` scope too."""
    _, token = kernel_with_openai.apps.register("other-app", ["chat"])
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


async def open_session(http, **body) -> dict:
    r = await http.post("/api/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_say_and_read_the_history(http, kernel_with_openai, openai_upstream):
    await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini")
    s = await open_session(http, system="You are terse.", metadata={"project": "x"})
    assert s["alias"] == "default" and s["metadata"] == {"project": "x"} and s["open"] and s["message_count"] == 1
    openai_upstream.reply_text = "Noted."
    r = await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "Remember 7.", "temperature": 0.1})
    assert r.status_code == 200, r.text
    turn = r.json()
    assert turn["message"] == {"role": "assistant", "content": "Noted."} and turn["model"] == "fake/gpt-fake-mini"
    sent = openai_upstream.requests[-1].body
    assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Remember 7."}]
    assert sent["temperature"] == 0.1
    r = await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "Which number?"})
    assert [m["content"] for m in openai_upstream.requests[-1].body["messages"]] == [
        "You are terse.", "Remember 7.", "Noted.", "Which number?"]
    history = (await http.get(f"/api/sessions/{s['id']}/messages")).json()["data"]
    assert [h["message"]["role"] for h in history] == ["system", "user", "assistant", "user", "assistant"]
    assert history[2]["model"] == "fake/gpt-fake-mini" and history[1]["model"] is None
    listed = (await http.get("/api/sessions")).json()["data"]
    assert [x["id"] for x in listed] == [s["id"]] and listed[0]["message_count"] == 5


async def test_a_streamed_turn_is_sse_and_stored(http, openai_upstream):
    s = await open_session(http)
    openai_upstream.reply_text = "one two three"
    text = ""
    async with http.stream("POST", f"/api/sessions/{s['id']}/messages",
                           json={"message": "Count.", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        for choice in json.loads(line.removeprefix("data: "))["choices"]:
            text += choice["delta"].get("content") or ""
    assert text == "one two three"
    history = (await http.get(f"/api/sessions/{s['id']}/messages")).json()["data"]
    assert history[-1]["message"] == {"role": "assistant", "content": "one two three"}


async def test_update_context_replaces_the_system_prompt_and_adds_messages(http, openai_upstream):
    s = await open_session(http)  # no system prompt yet
    await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "hi"})
    r = await http.patch(f"/api/sessions/{s['id']}", json={
        "system": "Speak French.", "metadata": {"lang": "fr"},
        "messages": [{"role": "user", "content": "Context: the user is in Lyon."}]})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"lang": "fr"}
    await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "Where am I?"})
    sent = openai_upstream.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Speak French."}
    assert [m["content"] for m in sent[1:]] == ["hi", openai_upstream.reply_text, "Context: the user is in Lyon.",
                                                "Where am I?"]
    await http.patch(f"/api/sessions/{s['id']}", json={"system": "Speak German."})
    await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "Again?"})
    sent = openai_upstream.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Speak German."}
    assert sum(m["role"] == "system" for m in sent) == 1


async def test_close_then_delete(http):
    s = await open_session(http)
    r = await http.post(f"/api/sessions/{s['id']}/close")
    assert r.status_code == 200 and r.json()["open"] is False
    r = await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "still there?"})
    assert r.status_code == 400 and "closed" in r.json()["error"]["message"]
    assert (await http.get("/api/sessions")).json()["data"] == []
    assert [x["id"] for x in (await http.get("/api/sessions", params={"closed": "true"})).json()["data"]] == [s["id"]]
    assert (await http.get(f"/api/sessions/{s['id']}/messages")).status_code == 200  # still readable
    assert (await http.delete(f"/api/sessions/{s['id']}")).json()["deleted"] is True
    assert (await http.get(f"/api/sessions/{s['id']}")).status_code == 404


async def test_each_app_sees_only_its_own_sessions(http, other):
    s = await open_session(http)
    theirs = await open_session(other)
    assert [x["id"] for x in (await other.get("/api/sessions")).json()["data"]] == [theirs["id"]]
    for method, path, body in (("GET", "", None), ("PATCH", "", {"system": "x"}), ("DELETE", "", None),
                               ("GET", "/messages", None), ("POST", "/messages", {"message": "hi"}),
                               ("POST", "/close", None)):
        r = await other.request(method, f"/api/sessions/{s['id']}{path}", json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert (await http.get(f"/api/sessions/{s['id']}")).json()["open"] is True


async def test_a_session_continues_after_a_swap_trimmed_to_the_new_window(http, kernel_with_openai,
                                                                         openai_upstream):
    openai_upstream.models = ["gpt-fake-mini", {"id": "tiny", "context_length": 700}]
    await kernel_with_openai.refresh_provider("fake")
    await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini")
    s = await open_session(http, system="Be brief.")
    for i in range(6):
        r = await http.post(f"/api/sessions/{s['id']}/messages", json={"message": f"turn {i} " + "word " * 150})
        assert r.status_code == 200
    assert len(openai_upstream.requests[-1].body["messages"]) == 12
    await kernel_with_openai.socket.swap("default", "fake/tiny")
    r = await http.post(f"/api/sessions/{s['id']}/messages", json={"message": "Still there?", "max_tokens": 100})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "fake/tiny"
    sent = openai_upstream.requests[-1].body
    assert sent["model"] == "tiny"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1]["content"] == "Still there?" and len(sent["messages"]) < 12
    history = (await http.get(f"/api/sessions/{s['id']}/messages")).json()["data"]
    assert len(history) == 15 and history[-1]["model"] == "fake/tiny"  # the whole history is kept


@pytest.mark.parametrize(("path", "body", "param"), [
    ("", {"alias": 3}, "alias"),
    ("", {"metadata": []}, "metadata"),
    ("", {"system": 5}, "system"),
    ("/messages", {"message": ""}, "message"),
    ("/messages", {"message": "x", "temperature": "hot"}, "temperature"),
    ("/messages", {"message": "x", "max_tokens": 0}, "max_tokens"),
    ("/messages", {"message": "x", "stream": "yes"}, "stream"),
    ("/", {"messages": [{"role": "user", "content": "ok"}, {"role": "robot"}]}, "messages[1]"),
])
async def test_bad_input_is_a_400_naming_the_field(http, path, body, param):
    if path == "/":
        s = await open_session(http)
        r = await http.patch(f"/api/sessions/{s['id']}", json=body)
        assert (await http.get(f"/api/sessions/{s['id']}")).json()["message_count"] == 0  # nothing stored
    elif path:
        s = await open_session(http)
        r = await http.post(f"/api/sessions/{s['id']}{path}", json=body)
    else:
        r = await http.post("/api/sessions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_unknown_alias_and_no_scope(http, anon, gateway, kernel_with_openai):
    r = await http.post("/api/sessions", json={"alias": "nowhere"})
    assert r.status_code == 404
    assert (await anon.get("/api/sessions")).status_code == 401
    _, token = kernel_with_openai.apps.register("reader", ["hinata:read"])
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        r = await c.post("/api/sessions", json={})
    assert r.status_code == 403 and "'chat'" in r.json()["error"]["message"]
