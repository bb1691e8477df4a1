"""The Activity view: requests as they finish, registered apps (revoke), the audit log."""

from __future__ import annotations

import httpx

from app.kernel.events import RequestFinished
from app.ui.views.activity import ActivityView


async def test_requests_appear_with_model_tokens_cost_and_outcome(runtime, qtbot):
    view = ActivityView(runtime)
    qtbot.addWidget(view)
    runtime.bridge.emit_event(
        RequestFinished(
            model="openai/gpt-4o-mini",
            provider="openai",
            app="notes",
            stream=True,
            latency_ms=321.0,
            prompt_tokens=12,
            completion_tokens=34,
            cost=0.0021,
            outcome="ok",
        )
    )
    runtime.bridge.emit_event(
        RequestFinished(
            model="openai/gpt-4o-mini",
            provider="openai",
            app="notes",
            stream=False,
            latency_ms=5.0,
            prompt_tokens=0,
            completion_tokens=0,
            cost=0.0,
            outcome="rate_limit_exceeded",
        )
    )
    row = [view.requests.item(1, c).text() for c in range(view.requests.columnCount())]
    assert row[1:] == ["notes", "openai/gpt-4o-mini", "12 / 34", "$0.0021", "321 ms", "ok"]
    assert view.requests.item(0, 6).text() == "✗ rate_limit_exceeded"
    assert view.summary.text() == "notes: 2 requests, 46 tokens, $0.0021"


async def test_registered_apps_can_be_revoked(runtime, qtbot):
    _info, token = runtime.kernel.apps.register("My Editor", ["chat"])
    view = ActivityView(runtime)
    qtbot.addWidget(view)
    view.load_apps()
    assert view.apps.rowCount() == 1 and view.apps.item(0, 1).text() == "chat"
    view.apps.selectRow(0)
    view.revoke_selected()
    assert runtime.kernel.apps.authenticate(token) is None
    assert view.apps.rowCount() == 0
    assert "Revoked" in view.banner.text
    await view.apps_loading


async def test_audit_log_lists_gateway_requests(runtime_with_openai, qtbot):
    runtime = runtime_with_openai
    _info, token = runtime.kernel.apps.register("notes", ["chat"])
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{runtime.gateway_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": "default", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert r.status_code == 200
    view = ActivityView(runtime)
    qtbot.addWidget(view)
    await view._load_audit()
    apps = {view.audit.item(i, 1).text() for i in range(view.audit.rowCount())}
    assert "notes" in apps
    assert view.audit_note.text().startswith("Last ")
    await view._load_history()  # what opening the view does: requests from before it existed
    assert view.requests.rowCount() >= 1 and view.requests.item(0, 1).text() == "notes"


async def test_apps_say_when_they_were_last_used_under_one_name(runtime_with_openai, openai_upstream, qtbot):
    """Issue 19: "Last used —" for apps that had made requests, and "ByenatOS Assistant" in one
    place but "byenatos-assistant" in another."""
    from tests.fakes.upstream import Fault

    runtime = runtime_with_openai
    _info, token = runtime.kernel.apps.register("ByenatOS Assistant", ["chat"])
    runtime.kernel.apps.register("Never Used", ["chat"])
    async with httpx.AsyncClient() as client:
        for fault in (None, Fault(kind="status", status=400, message="bad request", times=1)):
            openai_upstream.fault = fault
            await client.post(
                f"{runtime.gateway_url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "default", "messages": [{"role": "user", "content": "hi"}]},
            )
    view = ActivityView(runtime)
    qtbot.addWidget(view)
    view.load_apps()
    await view.apps_loading
    rows = {view.apps.item(r, 0).text(): [view.apps.item(r, c).text() for c in range(5)]
            for r in range(view.apps.rowCount())}
    assistant = rows["ByenatOS Assistant"]
    assert assistant[3] != "—" and assistant[3].endswith("· ✗ invalid_request_error")
    assert assistant[4] == "2 (1 failed)"
    assert rows["Never Used"][3:] == ["never", "0"]
    await view._load_history()
    await view._load_audit()
    names = {view.requests.item(r, 1).text() for r in range(view.requests.rowCount())}
    assert names == {"ByenatOS Assistant"}  # not its id
    assert "ByenatOS Assistant" in {view.audit.item(r, 1).text() for r in range(view.audit.rowCount())}
    assert "byenatos-assistant" not in {view.audit.item(r, 1).text() for r in range(view.audit.rowCount())}
    # Its row opens to what happened, in words.
    r = next(r for r in range(view.apps.rowCount()) if view.apps.item(r, 0).text() == "ByenatOS Assistant")
    details = view.open_row(view.apps, r)
    assert details.values["App id"] == "byenatos-assistant"
    assert details.values["Latest outcome"].startswith("the request was not valid")
    details.close()


async def test_a_request_row_opens_to_read_its_error(runtime, qtbot):
    view = ActivityView(runtime)
    qtbot.addWidget(view)
    runtime.bridge.emit_event(
        RequestFinished(model="acc/m", provider="acc", app=None, stream=True, latency_ms=5000.0,
                        prompt_tokens=3, completion_tokens=0, cost=0.0, outcome="upstream_timeout")
    )
    assert view.requests.item(0, 6).toolTip() == "the model's server took too long to answer (upstream_timeout)"
    view.requests.cellActivated.emit(0, 3)  # a double-click, or Enter, on the row
    details = view.details
    assert details is not None and details.isVisible()
    assert details.values["Outcome"] == "the model's server took too long to answer (upstream_timeout)"
    assert details.values["Latency"] == "5000 ms" and details.values["Streamed"] == "yes"
    details.close()
