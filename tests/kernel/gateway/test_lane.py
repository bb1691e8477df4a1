"""The pass-through lane (app.kernel.gateway.lane): what it serves, what it declines, and
that everything it cannot finish alone ends exactly as on the general path."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from app.kernel.events import RequestFinished
from app.kernel.gateway import lane as lane_module
from app.kernel.gateway.http_server import Connection
from app.kernel.gateway.keys import LANE
from app.kernel.gateway.server import GatewayServer
from app.kernel.monitor import accounting as accounting_module
from app.kernel.socket.manager import SwapStrategy
from tests.fakes.upstream import Fault

CHAT = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
PATH = "/v1/chat/completions"


@pytest.fixture
async def gateway(kernel_with_openai):
    """The gateway with its lane on, whatever the suite-wide parameter says."""
    kernel_with_openai.settings.gateway.fast_lane = True
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def lane(gateway):
    return gateway.app[LANE]


@pytest.fixture
def dep(kernel_with_openai):
    """The deployment behind `default`, as the router keeps it."""
    return kernel_with_openai.router.deployment(kernel_with_openai.default_model())


def _wire(gateway, body: bytes, **headers: str) -> bytes:
    fields = {"Host": f"127.0.0.1:{gateway.port}", "Content-Type": "application/json",
              "Content-Length": str(len(body)), **headers}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"POST {PATH} HTTP/1.1\r\n{head}\r\n".encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def _exchange(gateway, *packets: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `packets` as separate writes (each drained), read one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        for packet in packets:
            writer.write(packet)
            await writer.drain()
        return await _read_answer(reader)
    finally:
        writer.close()


# -- what it serves ------------------------------------------------------------------------------
async def test_plain_chat_is_served_in_the_lane(http, lane, dep, kernel_with_openai, openai_upstream):
    answers = [await http.post(PATH, json=CHAT) for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 200]
    data = answers[-1].json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"]
    assert answers[-1].headers["content-type"] == "application/json" and answers[-1].headers["server"] == "ByenatOS"
    assert (lane.served, lane.handed_over) == (3, 0)
    # the upstream got the body with the model renamed, once per request
    assert [r.body["model"] for r in openai_upstream.requests if r.path == PATH] == [dep.spec.name] * 3
    # the router's bookkeeping: slots given back when the calls are settled (a drain settles
    # them), successes counted after the answer
    kernel_with_openai.accounting.drain()
    assert dep.in_flight == 0 and not lane.unsettled
    assert dep.served == 3
    await kernel_with_openai.accounting.settle()
    rows = await kernel_with_openai.accounting.audit.recent(limit=5)
    assert [(r["app"], r["endpoint"], r["outcome"]) for r in rows] == [("test-app", PATH, "ok")] * 3
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["prompt"] is None for r in rows)


async def test_the_lane_off_serves_the_same_answers_on_the_general_path(kernel_with_openai, app_token):
    kernel_with_openai.settings.gateway.fast_lane = False
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        assert server.app.get(LANE) is None
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {app_token}"}) as c:
            r = await c.post(PATH, json=CHAT)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    finally:
        await server.stop()


async def test_prompts_are_audited_from_the_lane_when_turned_on(gateway, lane, kernel_with_openai, app_token):
    kernel_with_openai.settings.gateway.audit_prompts = True
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "secret plan"}]}).encode()
        status, _, _ = await _exchange(server, _wire(server, body, Authorization=f"Bearer {app_token}"))
        assert status == 200 and server.app[LANE].served == 1
    finally:
        await server.stop()
    await kernel_with_openai.accounting.settle()
    assert "secret plan" in (await kernel_with_openai.accounting.audit.recent(limit=1))[0]["prompt"]


async def test_a_waiting_pipelined_request_is_answered_after_the_lanes(gateway, lane, app_token, openai_upstream):
    openai_upstream.latency = 0.05  # the first answer takes a while: the second arrives meanwhile
    one = _wire(gateway, json.dumps({**CHAT, "model": "fake/gpt-fake-mini"}).encode(),
                Authorization=f"Bearer {app_token}")
    two = _wire(gateway, json.dumps({**CHAT, "model": "fake/gpt-fake-large"}).encode(),
                Authorization=f"Bearer {app_token}")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    seen = len(openai_upstream.requests)
    try:
        writer.write(one)
        await openai_upstream.wait_requests(seen + 1)  # the first is upstream
        writer.write(two)
        first, second = await _read_answer(reader), await _read_answer(reader)
    finally:
        writer.close()
    assert first[0] == second[0] == 200
    assert json.loads(first[2])["model"] == "gpt-fake-mini" and json.loads(second[2])["model"] == "gpt-fake-large"
    assert lane.served == 1  # the second went through the parser, in order


# -- what it declines (no side effects: the general path answers as always) ----------------------
@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Origin": "http://evil.example"}, CHAT, 403),
        ({"Host": "evil.example"}, CHAT, 403),
        ({"Authorization": "Bearer wrong"}, CHAT, 401),
        ({"Authorization": None, "X-Api-Key": "TOKEN"}, CHAT, 200),
        ({"Connection": "close"}, CHAT, 200),
        ({}, {**CHAT, "model": "no-such-model"}, 404),
        ({}, {**CHAT, "messages": []}, 400),
    ],
    ids=["origin", "host", "bad-token", "x-api-key", "connection-close", "unknown-model", "bad-body"],
)
async def test_requests_the_lane_declines_take_the_general_path(gateway, lane, dep, app_token, headers, body,
                                                                 status):
    fields = {"Authorization": f"Bearer {app_token}", **headers}
    fields = {k: v.replace("TOKEN", app_token) for k, v in fields.items() if v is not None}
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as c:
        r = await c.post(PATH, json=body, headers=fields)
    assert r.status_code == status
    assert (lane.served, lane.handed_over) == (0, 0) and dep.in_flight == 0


async def test_a_request_split_across_packets_takes_the_general_path(gateway, lane, app_token):
    body = json.dumps(CHAT).encode()
    wire = _wire(gateway, body, Authorization=f"Bearer {app_token}", Expect="100-continue")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(wire[: -len(body)])  # the head alone: the body follows once the server asks
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        status, _, answer = await _read_answer(reader)
    finally:
        writer.close()
    assert status == 200 and json.loads(answer)["choices"] and lane.served == 0


async def test_a_repeated_header_takes_the_general_path(gateway, lane, app_token):
    wire = _wire(gateway, json.dumps(CHAT).encode(), Authorization=f"Bearer {app_token}")
    wire = wire.replace(b"Content-Type: application/json\r\n", b"Accept: a\r\nAccept: b\r\n")
    status, _, _ = await _exchange(gateway, wire)
    assert status == 200 and lane.served == 0


async def test_a_smuggling_shape_is_refused_by_the_parser_not_served(gateway, lane, app_token):
    body = json.dumps(CHAT).encode()
    wire = _wire(gateway, body, Authorization=f"Bearer {app_token}")
    wire = wire.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(body)}\r\n\r\n".encode(), 1)  # twice
    status, _, _ = await _exchange(gateway, wire)
    assert status == 400 and lane.served == 0


async def test_a_rate_limited_app_is_served_in_the_lane_and_pays_once(http, lane, kernel_with_openai):
    kernel_with_openai.apps.set_limits("test-app", rate_limit_rpm=2)
    answers = [await http.post(PATH, json=CHAT) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429] and lane.served == 2
    assert answers[2].json()["error"]["code"] == "rate_limit_exceeded" and "2 requests per minute" in answers[2].text


async def test_a_rate_limited_request_handed_over_pays_once(http, lane, kernel_with_openai, openai_upstream):
    kernel_with_openai.apps.set_limits("test-app", rate_limit_rpm=2)
    openai_upstream.fault = Fault(kind="status", status=500, times=1)  # the lane hands it to the router's retry
    statuses = [(await http.post(PATH, json=CHAT)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429] and lane.handed_over == 1 and lane.served == 1


async def test_a_rate_limited_request_the_lane_cannot_route_is_not_charged_twice(http, lane, kernel_with_openai,
                                                                                 monkeypatch):
    kernel_with_openai.apps.set_limits("test-app", rate_limit_rpm=1)
    monkeypatch.setattr(kernel_with_openai.router, "open", lambda plan: None)  # the lane finds nothing admissible

    first = await http.post(PATH, json=CHAT)  # declined by the lane, served by the general path

    assert first.status_code == 200 and lane.served == 0 and lane.handed_over == 0
    assert (await http.post(PATH, json=CHAT)).status_code == 429  # one request of the minute taken, not two


async def test_an_app_over_its_budget_is_refused_on_the_general_path(http, lane, kernel_with_openai):
    kernel_with_openai.apps.set_limits("test-app", daily_token_budget=5)
    assert (await http.post(PATH, json=CHAT)).status_code == 200
    await kernel_with_openai.accounting.settle()
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    assert lane.served == 1  # under budget, the lane served it


# -- what it hands over ----------------------------------------------------------------------------
async def test_a_retryable_upstream_error_is_retried_by_the_router_not_replayed(http, lane, dep, openai_upstream):
    await http.post(PATH, json=CHAT)  # a kept-alive upstream connection
    openai_upstream.fault = Fault(kind="status", status=500, times=1)
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 200 and lane.handed_over == 1
    assert len([q for q in openai_upstream.requests if q.path == PATH]) == 3  # 1 + the failure + one retry
    assert dep.in_flight == 0 and dep.errors == 1


async def test_a_bad_request_upstream_is_not_retried(http, lane, dep, openai_upstream):
    await http.post(PATH, json=CHAT)
    openai_upstream.fault = Fault(kind="status", status=400, message="the model refuses this", times=1)
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 400 and "the model refuses this" in r.json()["error"]["message"]
    assert len([q for q in openai_upstream.requests if q.path == PATH]) == 2 and lane.handed_over == 1
    assert dep.in_flight == 0


async def test_a_failing_primary_fails_over_to_the_fallback(http, lane, kernel_with_openai, openai_upstream,
                                                            anthropic_upstream):
    await kernel_with_openai.add_provider("claude", "anthropic", base_url=anthropic_upstream.url)
    kernel_with_openai.registry.add_model("claude", "claude-fake")
    kernel_with_openai.socket.configure("default", fallbacks=["claude/claude-fake"])
    await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini")
    anthropic_upstream.reply_text = "Claude answers."
    await http.post(PATH, json=CHAT)
    openai_upstream.fault = Fault(kind="status", status=401, message="key revoked")  # misconfigured: next

    r = await http.post(PATH, json=CHAT)

    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Claude answers."
    assert lane.handed_over == 1 and len([q for q in openai_upstream.requests if q.path == PATH]) == 2


@pytest.mark.parametrize("body", ["{oops", '{"error": {"message": "overloaded", "type": "server_error"}}'],
                         ids=["invalid-json", "error-object-in-a-200"])
async def test_a_broken_200_is_handed_to_the_router_and_retried(http, lane, dep, openai_upstream, body):
    openai_upstream.fault = Fault(kind="body", status=200, message=body, times=1)
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == openai_upstream.reply_text
    assert lane.handed_over == 1 and len([q for q in openai_upstream.requests if q.path == PATH]) == 2


async def test_a_connection_cut_before_any_answer_is_sent_again_on_a_new_one(http, lane, openai_upstream):
    await http.post(PATH, json=CHAT)
    openai_upstream.fault = Fault(kind="disconnect", times=1)
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 200 and lane.handed_over == 1
    assert len([q for q in openai_upstream.requests if q.path == PATH]) == 3


async def test_an_upstream_timeout_is_handed_to_the_router(http, lane, dep, kernel_with_openai, openai_upstream):
    kernel_with_openai.settings.request_timeout = 0.3
    await kernel_with_openai.reset_driver("fake")  # the new timeout applies
    await http.post(PATH, json=CHAT)
    openai_upstream.fault = Fault(kind="hang", times=1)
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 200 and lane.handed_over == 1  # timed out once, retried
    assert openai_upstream.cancelled.is_set()  # the hung request's connection was closed
    assert kernel_with_openai.router.deployment(kernel_with_openai.default_model()).in_flight == 0


async def test_the_first_request_to_a_server_connects_in_the_lane(gateway, lane, app_token, openai_upstream):
    wire = _wire(gateway, json.dumps(CHAT).encode(), Authorization=f"Bearer {app_token}")
    status, _, _ = await _exchange(gateway, wire)
    assert status == 200 and (lane.served, lane.handed_over) == (1, 0)


async def test_an_unreachable_server_is_failed_over_by_the_router(http, lane, kernel_with_openai, openai_upstream):
    await openai_upstream.refuse()
    r = await http.post(PATH, json=CHAT)
    assert r.status_code == 502 or r.status_code == 503
    assert lane.handed_over == 1 and "connect" in r.json()["error"]["message"]


# -- the client, swaps, shutdown -------------------------------------------------------------------
async def test_a_client_that_leaves_stops_the_upstream_and_frees_the_slot(gateway, lane, dep, app_token,
                                                                          kernel_with_openai, openai_upstream):
    await _exchange(gateway, _wire(gateway, json.dumps(CHAT).encode(), Authorization=f"Bearer {app_token}"))
    openai_upstream.fault = Fault(kind="hang")
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(_wire(gateway, json.dumps(CHAT).encode(), Authorization=f"Bearer {app_token}"))
    await openai_upstream.hanging.wait()
    assert dep.in_flight == 1
    writer.close()
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)
    assert dep.in_flight == 0
    await kernel_with_openai.accounting.settle()
    assert (await kernel_with_openai.accounting.audit.recent(limit=1))[0]["outcome"] == "cancelled"


async def test_an_immediate_swap_ends_the_lanes_request_as_swapped(http, lane, dep, kernel_with_openai,
                                                                   openai_upstream):
    await http.post(PATH, json=CHAT)
    openai_upstream.fault = Fault(kind="hang")
    pending = asyncio.create_task(http.post(PATH, json=CHAT))
    await openai_upstream.hanging.wait()
    result = await kernel_with_openai.socket.swap("default", "fake/gpt-fake-large", SwapStrategy.IMMEDIATE)
    r = await pending
    assert result.cancelled == 1
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_swapped"
    assert dep.in_flight == 0 and lane.handed_over == 1
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)


async def test_shutdown_lets_a_lane_request_finish(gateway, lane, app_token, openai_upstream):
    await _exchange(gateway, _wire(gateway, json.dumps(CHAT).encode(), Authorization=f"Bearer {app_token}"))
    openai_upstream.latency = 0.2
    seen = len(openai_upstream.requests)
    pending = asyncio.create_task(
        _exchange(gateway, _wire(gateway, json.dumps(CHAT).encode(), Authorization=f"Bearer {app_token}")))
    await openai_upstream.wait_requests(seen + 1)
    await gateway.stop()
    status, headers, _ = await pending
    assert status == 200 and headers.get("connection") == "close" and lane.served == 2


# -- streams -----------------------------------------------------------------------------------------
async def _events(http, body) -> tuple[int, list[str]]:
    """A stream's status and its `data:` payloads, read to the end."""
    async with http.stream("POST", PATH, json={**body, "stream": True}) as r:
        lines = [line async for line in r.aiter_lines()]
    return r.status_code, [line[6:] for line in lines if line.startswith("data: ")]


async def test_a_stream_is_relayed_in_the_lane_with_its_usage_kept_from_the_client(
    http, lane, dep, kernel_with_openai, openai_upstream
):
    status, events = await _events(http, CHAT)
    asked_status, asked = await _events(http, {**CHAT, "stream_options": {"include_usage": True}})

    assert status == asked_status == 200 and events[-1] == asked[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == openai_upstream.reply_text
    assert not any('"usage": {' in e or '"usage":{' in e for e in events)  # metered, not shown
    assert json.loads(asked[-2])["usage"]["completion_tokens"] > 0  # asked for: passed on
    sent = [q.body for q in openai_upstream.requests if q.path == PATH]
    assert all(b["stream_options"] == {"include_usage": True} and b["model"] == dep.spec.name for b in sent)
    await kernel_with_openai.accounting.settle()
    assert (lane.served, lane.handed_over) == (2, 0) and dep.in_flight == 0 and dep.served == 2
    rows = await kernel_with_openai.accounting.audit.recent(limit=2)
    assert [(r["outcome"], bool(r["stream"])) for r in rows] == [("ok", True)] * 2
    assert all(r["completion_tokens"] > 0 for r in rows)  # counted from the hidden usage chunk


async def test_a_stream_failing_before_its_first_event_is_retried_by_the_router(http, lane, dep, openai_upstream):
    await _events(http, CHAT)
    openai_upstream.fault = Fault(kind="status", status=503, times=1)
    status, events = await _events(http, CHAT)
    assert status == 200 and events[-1] == "[DONE]" and lane.handed_over == 1
    assert len([q for q in openai_upstream.requests if q.path == PATH]) == 3 and dep.in_flight == 0


async def test_a_stream_cut_after_its_first_events_ends_with_an_error_event(http, lane, dep, kernel_with_openai,
                                                                            openai_upstream):
    await _events(http, CHAT)
    openai_upstream.fault = Fault(kind="disconnect", after_chunks=2, times=1)
    status, events = await _events(http, CHAT)
    assert status == 200 and events[-1] != "[DONE]"
    assert json.loads(events[-1])["error"]["type"] in ("upstream_unavailable", "api_error", "server_error")
    assert "connection" in json.loads(events[-1])["error"]["message"]
    assert dep.errors == 1 and dep.in_flight == 0 and lane.handed_over == 0
    await kernel_with_openai.accounting.settle()
    assert (await kernel_with_openai.accounting.audit.recent(limit=1))[0]["outcome"] != "ok"


async def test_an_immediate_swap_mid_stream_ends_it_with_a_swapped_event(http, lane, dep, kernel_with_openai,
                                                                         openai_upstream):
    await _events(http, CHAT)
    openai_upstream.chunk_delay = 0.2  # slow generation: the swap comes between two events
    async with http.stream("POST", PATH, json={**CHAT, "stream": True}) as r:
        lines = r.aiter_lines()
        async for line in lines:
            if line.startswith("data: "):
                break  # the first event is here: the stream is the lane's
        result = await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini", SwapStrategy.IMMEDIATE)
        rest = [line[6:] async for line in lines if line.startswith("data: ")]
    assert result.cancelled == 1
    assert json.loads(rest[-1])["error"]["code"] == "model_swapped" and dep.in_flight == 0
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)


async def test_a_client_leaving_a_lane_stream_stops_the_upstream(gateway, lane, dep, app_token, kernel_with_openai,
                                                                 openai_upstream):
    openai_upstream.chunk_delay = 0.2
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {app_token}"}) as c,
        c.stream("POST", PATH, json={**CHAT, "stream": True}) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)
    assert lane.served == 1 and dep.in_flight == 0 and openai_upstream.streams_finished == 0
    await kernel_with_openai.accounting.settle()
    assert (await kernel_with_openai.accounting.audit.recent(limit=1))[0]["outcome"] == "cancelled"


async def test_a_stream_without_done_ends_cleanly(http, lane, dep, openai_upstream):
    openai_upstream.send_done = False  # some older servers just end the body
    status, events = await _events(http, CHAT)
    assert status == 200 and events and events[-1] != "[DONE]" and lane.served == 1 and dep.in_flight == 0


async def test_a_client_that_does_not_read_pauses_the_upstream_until_it_does(gateway, lane, app_token,
                                                                             openai_upstream, monkeypatch):
    paused = asyncio.Event()
    pause_writing = Connection.pause_writing

    def pause(conn: Connection) -> None:
        pause_writing(conn)
        paused.set()

    monkeypatch.setattr(Connection, "pause_writing", pause)
    openai_upstream.reply_text = ("x" * 100_000 + " ") * 100  # 100 events of 100 kB: more than buffers hold
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)  # buffers 128 kB, then stops
    try:
        writer.write(_wire(gateway, json.dumps({**CHAT, "stream": True}).encode(),
                           Authorization=f"Bearer {app_token}"))
        await asyncio.wait_for(paused.wait(), 10)  # the client reads nothing yet
        (conn,) = [c for c in gateway._server.connections if c._fast_call is not None]
        assert conn._fast_call.up.transport.is_reading() is False  # nor does the lane read upstream
        body = b""
        while not body.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
            piece = await asyncio.wait_for(reader.read(2**20), 30)
            assert piece, "the stream ended before [DONE]"
            body += piece
    finally:
        writer.close()
    assert body.count(b"x" * 100_000) == 100 and lane.served == 1 and openai_upstream.streams_finished == 1


async def test_header_lines_are_remembered_apart_from_the_length(gateway, lane, app_token):
    """What an app's header lines say is remembered, keyed by everything but Content-Length:
    other lengths are served, and a block that differs anywhere else is read again."""
    short = json.dumps(CHAT).encode()
    longer = json.dumps({**CHAT, "messages": [{"role": "user", "content": "hi " * 50}]}).encode()
    token = f"Bearer {app_token}"
    statuses = [(await _exchange(gateway, _wire(gateway, b, Authorization=token)))[0] for b in (short, longer)]
    lowercase = _wire(gateway, short, Authorization=token).replace(b"Content-Length:", b"content-length:")
    statuses.append((await _exchange(gateway, lowercase))[0])
    assert statuses == [200, 200, 200] and lane.served == 3
    # the same lines but for a second Content-Length: read again, and left to llhttp (400)
    doubled = _wire(gateway, short, Authorization=token).replace(
        b"\r\n\r\n", f"\r\nContent-Length: {len(short)}\r\n\r\n".encode(), 1)
    assert (await _exchange(gateway, doubled))[0] == 400 and lane.served == 3


async def test_metrics_count_what_the_lane_served_and_handed_over(http, admin, lane, openai_upstream):
    await http.post(PATH, json=CHAT)
    openai_upstream.fault = Fault(kind="status", status=500, times=1)
    await http.post(PATH, json=CHAT)
    text = (await admin.get("/metrics")).text
    assert "# TYPE byenatos_gateway_lane_requests_total counter" in text
    assert 'byenatos_gateway_lane_requests_total{result="served"} 1' in text
    assert 'byenatos_gateway_lane_requests_total{result="handed_over"} 1' in text


# -- bookkeeping after the answer ------------------------------------------------------------------
async def test_the_bookkeeping_of_an_answer_is_done_after_it_unasked(http, lane, dep, kernel_with_openai):
    finished = kernel_with_openai.events.subscribe(accepts=lambda e: isinstance(e, RequestFinished))
    try:
        assert (await http.post(PATH, json=CHAT)).status_code == 200
        # nobody drains: the accounting's timer does it (a hang here fails the test)
        event = await asyncio.wait_for(anext(aiter(finished)), 5)
    finally:
        finished.close()
    assert event.outcome == "ok" and event.app == "test-app" and event.completion_tokens > 0
    assert 0 < event.latency_ms < 5000 and dep.served == 1 and not kernel_with_openai.accounting.pending


async def test_the_next_request_sees_the_charge_of_the_one_before(http, lane, kernel_with_openai, monkeypatch):
    # No settle between the two, and a timer that would not fire in time: the lane records
    # what it answered before it takes another request.
    monkeypatch.setattr(accounting_module, "AFTER_ANSWER_S", 60.0)
    kernel_with_openai.apps.set_limits("test-app", daily_token_budget=5)
    first, second = [await http.post(PATH, json=CHAT) for _ in range(2)]
    assert first.status_code == 200 and second.status_code == 429
    assert second.json()["error"]["code"] == "budget_exceeded" and lane.served == 1


async def test_a_slow_stream_outlives_the_read_timeout_while_events_keep_coming(
    http, lane, dep, kernel_with_openai, openai_upstream
):
    # The sweep fails a call only after the timeout passes with nothing read, not the timeout
    # after the request was sent.
    kernel_with_openai.settings.request_timeout = 0.3
    await kernel_with_openai.reset_driver("fake")
    openai_upstream.chunk_delay = 0.1  # the whole stream takes well over 0.3 s
    status, events = await _events(http, CHAT)
    assert status == 200 and events[-1] == "[DONE]" and len(events) > 4
    assert (lane.served, lane.handed_over) == (1, 0)


async def test_the_general_path_records_what_it_answered_before_the_next_request(kernel_with_openai, app_token,
                                                                                 monkeypatch):
    monkeypatch.setattr(accounting_module, "AFTER_ANSWER_S", 60.0)
    kernel_with_openai.settings.gateway.fast_lane = False
    kernel_with_openai.apps.set_limits("test-app", daily_token_budget=5)
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {app_token}"}) as c:
            statuses = [(await c.post(PATH, json=CHAT)).status_code for _ in range(2)]
    finally:
        await server.stop()
    assert statuses == [200, 429]


# -- settling: what is left after an answer waits until the client has it ------------------------
@pytest.fixture
def late_settling(monkeypatch):
    """A settle timer that would not fire during a test: whatever settles a call is something else."""
    monkeypatch.setattr(lane_module, "SETTLE_S", 60.0)


async def test_the_next_request_settles_the_call_answered_before_it(http, lane, dep, late_settling, monkeypatch):
    # Only the next request may settle here: no reader of the accounting (a background probe, a
    # budget check) in between, which would settle it too (that is the next test's case).
    monkeypatch.setattr(lane.kernel.accounting, "feeders", [])
    assert (await http.post(PATH, json=CHAT)).status_code == 200
    # the client had its answer before the call gave back its slot and upstream connection
    assert len(lane.unsettled) == 1 and dep.in_flight == 1

    assert (await http.post(PATH, json=CHAT)).status_code == 200

    assert (lane.served, lane.handed_over) == (2, 0)
    assert len(lane.unsettled) == 1 and dep.in_flight == 1  # the second call; the first was settled
    lane.settle()
    assert dep.in_flight == 0 and not lane.unsettled
    # the second request went out on the first one's kept-alive connection, not a new one
    assert len(lane.clients[dep.driver]._idle) == 1


async def test_a_reader_of_the_accounting_settles_what_was_answered(http, lane, dep, kernel_with_openai,
                                                                   late_settling, monkeypatch):
    monkeypatch.setattr(accounting_module, "AFTER_ANSWER_S", 60.0)
    finished = kernel_with_openai.events.subscribe(accepts=lambda e: isinstance(e, RequestFinished))
    try:
        assert (await http.post(PATH, json=CHAT)).status_code == 200
        assert dep.served == 0 and lane.unsettled

        kernel_with_openai.accounting.drain()  # what a budget check, /metrics or the audit log's readers do

        assert not lane.unsettled and dep.in_flight == 0 and dep.served == 1
        event = await asyncio.wait_for(anext(aiter(finished)), 5)
    finally:
        finished.close()
    assert event.outcome == "ok" and event.completion_tokens > 0


async def test_a_streams_settling_waits_and_records_its_usage(http, lane, dep, kernel_with_openai, late_settling):
    status, events = await _events(http, CHAT)
    assert status == 200 and events[-1] == "[DONE]"
    assert len(lane.unsettled) == 1 and dep.in_flight == 1

    await kernel_with_openai.accounting.settle()

    assert not lane.unsettled and dep.in_flight == 0 and dep.served == 1
    row = (await kernel_with_openai.accounting.audit.recent(limit=1))[0]
    assert row["outcome"] == "ok" and row["completion_tokens"] > 0  # the usage the client did not ask for


async def test_shutdown_settles_the_answered_calls(gateway, http, lane, dep, kernel_with_openai, late_settling):
    assert (await http.post(PATH, json=CHAT)).status_code == 200
    assert lane.unsettled

    await gateway.stop()

    assert not lane.unsettled and dep.in_flight == 0
    assert lane.settle not in kernel_with_openai.accounting.feeders


async def test_an_upstream_connection_that_says_more_after_its_answer_is_not_reused(http, lane, dep,
                                                                                  late_settling):
    assert (await http.post(PATH, json=CHAT)).status_code == 200
    call = lane.unsettled[0]
    up = call.up
    up.data_received(b"HTTP/1.1 200 OK\r\n")  # bytes nobody asked for, before the call was settled

    lane.settle()

    assert up.closed and not lane.clients[dep.driver]._idle


async def test_a_swap_right_after_an_answer_neither_cancels_nor_waits_for_it(http, lane, dep, kernel_with_openai,
                                                                            late_settling):
    assert (await http.post(PATH, json=CHAT)).status_code == 200
    assert lane.unsettled

    result = await kernel_with_openai.socket.swap("default", "fake/gpt-fake-large", SwapStrategy.IMMEDIATE)

    assert result.cancelled == 0 and lane.handed_over == 0
    lane.settle()
    assert dep.in_flight == 0


# -- giving up the core after an answer ------------------------------------------------------------
@pytest.fixture
def yields(monkeypatch) -> list[None]:
    """Every time the lane gave up its core (sched_yield) after an answer."""
    calls: list[None] = []
    monkeypatch.setattr(lane_module, "_yield_core", lambda: calls.append(None))
    return calls


async def test_the_core_is_given_up_after_an_answer_when_nothing_else_runs(http, lane, yields, late_settling):
    assert (await http.post(PATH, json=CHAT)).status_code == 200
    assert len(yields) == 1

    status, events = await _events(http, CHAT)  # the first call is settled by this request

    assert status == 200 and events[-1] == "[DONE]"
    assert len(yields) == 2 and lane.served == 2


async def test_the_core_is_kept_while_other_calls_run(http, lane, yields, late_settling, openai_upstream):
    openai_upstream.latency = 0.5  # both requests are in flight when the first answer comes

    answers = await asyncio.gather(*(http.post(PATH, json=CHAT) for _ in range(2)))

    assert [r.status_code for r in answers] == [200, 200] and lane.served == 2
    assert yields == []  # each answer came while the other call held a slot


# -- whole JSON answers and empty answers to streams (issue 19) ---------------------------------
async def test_a_whole_json_answer_to_a_stream_is_served_in_the_lane(http, lane, dep, kernel_with_openai,
                                                                     openai_upstream):
    openai_upstream.json_for_stream = True
    r = await http.post(PATH, json={**CHAT, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e[6:]) for e in r.text.split("\n\n") if e.startswith("data: {")]
    assert [e["choices"][0]["delta"]["content"] for e in events] == [openai_upstream.reply_text]
    assert r.text.endswith("data: [DONE]\n\n")
    assert (lane.served, lane.handed_over) == (1, 0)
    await kernel_with_openai.accounting.settle()
    row = (await kernel_with_openai.accounting.audit.recent(limit=1))[0]
    assert row["outcome"] == "ok" and row["completion_tokens"] > 0  # the usage the client did not ask for
    assert dep.in_flight == 0


async def test_an_empty_stream_is_handed_over_as_a_failed_attempt(http, lane, dep, kernel_with_openai,
                                                                  openai_upstream):
    openai_upstream.empty_streams = True
    r = await http.post(PATH, json={**CHAT, "stream": True})
    assert r.status_code == 502 and r.json()["error"]["code"] == "empty_answer"
    assert (lane.served, lane.handed_over) == (0, 1) and dep.in_flight == 0
    await kernel_with_openai.accounting.settle()
    assert (await kernel_with_openai.accounting.audit.recent(limit=1))[0]["outcome"] == "empty_answer"
