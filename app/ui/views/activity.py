"""The Activity view: requests per app (model, tokens, cost, latency, outcome), registered apps
and their scopes (revoke), and the audit log — from the kernel's events and security APIs."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.ui.views.base import View
from app.ui.widgets.text import in_words, model_label_for, outcome_words

REQUEST_COLUMNS = ["Time", "App", "Model", "Tokens in/out", "Cost", "Latency", "Outcome"]
APP_COLUMNS = ["App", "Scopes", "Registered", "Last used", "Requests"]
MAX_ROWS = 500
ROW_DATA = Qt.ItemDataRole.UserRole + 1  # what a row's details dialog shows (on its first cell)


class DetailsDialog(QDialog):
    """One row of a table, every field in words: double-click (or Enter on) a row to open it."""

    def __init__(self, title: str, fields: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(420)
        form = QFormLayout()
        self.values: dict[str, str] = {}
        for name, value in fields:
            label = QLabel(value or "—", self)
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(f"{name}:", label)
            self.values[name] = value
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)


def _table(columns: list[str], parent: QWidget, name: str) -> QTableWidget:
    t = QTableWidget(0, len(columns), parent)
    t.setHorizontalHeaderLabels(columns)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    t.setAlternatingRowColors(True)
    t.setAccessibleName(name)
    t.setToolTip("Double-click a row (or press Enter on it) to read all of it")
    return t


class ActivityView(View):
    title = "Activity"
    icon_name = "activity"
    subtitle = "What every app asked, which model answered, what it cost."

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(runtime, parent)
        self.tabs = QTabWidget(self)
        self.body.addWidget(self.tabs, 1)

        req = QWidget()
        rl = QVBoxLayout(req)
        self.summary = QLabel("No requests yet.", req)
        self.requests = _table(REQUEST_COLUMNS, req, "Requests")
        rl.addWidget(self.summary)
        rl.addWidget(self.requests, 1)
        self.tabs.addTab(req, "Requests")

        apps = QWidget()
        al = QVBoxLayout(apps)
        self.apps_note = QLabel("", apps)
        self.apps_note.setWordWrap(True)
        self.apps = _table(APP_COLUMNS, apps, "Registered apps")
        row = QHBoxLayout()
        self.revoke_button = QPushButton("Revoke selected app", apps)
        self.revoke_button.clicked.connect(self.revoke_selected)
        row.addStretch(1)
        row.addWidget(self.revoke_button)
        al.addWidget(self.apps_note)
        al.addWidget(self.apps, 1)
        al.addLayout(row)
        self.tabs.addTab(apps, "Apps")

        audit = QWidget()
        aul = QVBoxLayout(audit)
        self.audit_note = QLabel("", audit)
        self.audit = _table(["Time", "App", "Action", "Detail"], audit, "Audit log")
        aul.addWidget(self.audit_note)
        aul.addWidget(self.audit, 1)
        self.tabs.addTab(audit, "Audit log")

        self.totals: dict[str, dict[str, float]] = {}
        self.app_names: dict[str, str] = {}  # app id → the name it registered with
        self.details: DetailsDialog | None = None
        self.apps_usage: dict[str, dict[str, Any]] = {}  # app id → requests, errors, last request
        self.apps_loading: Any = None  # the task filling in "Last used" and "Requests"
        self._history_loaded = False
        runtime.bridge.requestFinished.connect(self.add_request)
        self.tabs.currentChanged.connect(lambda _i: self.activated())
        for table, opener in (
            (self.requests, self._request_details),
            (self.apps, self._app_details),
            (self.audit, self._audit_details),
        ):
            table.cellActivated.connect(lambda row, _col, t=table, f=opener: self._open_row(t, row, f))
        self._read_app_names()

    def activated(self) -> None:
        if not self.runtime.started:
            return
        if not self._history_loaded:
            self._history_loaded = True
            self.run(self._load_history(), name="activity-history")
        self.load_apps()
        self.load_audit()

    # -- requests -------------------------------------------------------------------------------
    async def _load_history(self) -> None:
        """Requests from before this view opened (the audit log keeps them), newest at the top."""
        audit = getattr(getattr(self.runtime.kernel, "accounting", None), "audit", None)
        if audit is None:
            return
        from app.kernel.events import RequestFinished

        for r in await audit.recent(limit=200):  # newest first
            self.add_request(
                RequestFinished(
                    model=r.get("model") or "",
                    provider=r.get("provider") or "",
                    app=r.get("app"),
                    stream=bool(r.get("stream")),
                    latency_ms=float(r.get("latency_ms") or 0),
                    prompt_tokens=int(r.get("prompt_tokens") or 0),
                    completion_tokens=int(r.get("completion_tokens") or 0),
                    cost=float(r.get("cost") or 0),
                    outcome=r.get("outcome") or "ok",
                    ts=float(r.get("ts") or 0),
                ),
                at_bottom=True,
            )

    # -- app names: one app, one name everywhere ----------------------------------------------------
    def _read_app_names(self) -> None:
        api = self._apps_api()
        lister = getattr(api, "list", None)
        if lister is None or not self.runtime.started:
            return
        try:
            apps = lister(include_revoked=True)
        except Exception:
            return
        self.app_names.update({_attr(a, "id"): _attr(a, "name", "id") for a in apps})

    def app_name(self, app_id: str | None) -> str:
        """The name an app registered with ("ByenatOS Assistant"), not its id ("byenatos-assistant")."""
        if not app_id:
            return "—"
        if app_id not in self.app_names:
            self._read_app_names()
        return self.app_names.get(app_id) or app_id

    def add_request(self, e: Any, *, at_bottom: bool = False) -> None:
        row = self.requests.rowCount() if at_bottom else 0
        self.requests.insertRow(row)
        cells = [
            time.strftime("%H:%M:%S", time.localtime(e.ts)),
            self.app_name(e.app),
            e.model,
            f"{e.prompt_tokens} / {e.completion_tokens}",
            f"${e.cost:.4f}" if e.cost else "—",
            f"{e.latency_ms:.0f} ms",
            "ok" if e.outcome == "ok" else f"✗ {e.outcome}",
        ]
        for c, text in enumerate(cells):
            self.requests.setItem(row, c, QTableWidgetItem(text))
        self.requests.item(row, 0).setData(ROW_DATA, e)
        self.requests.item(row, 1).setToolTip(e.app or "the kernel's own callers (command line)")
        self.requests.item(row, 6).setToolTip(self._outcome_text(e))
        if self.requests.rowCount() > MAX_ROWS:
            self.requests.removeRow(self.requests.rowCount() - 1)
        t = self.totals.setdefault(self.app_name(e.app), {"n": 0, "cost": 0.0, "tokens": 0})
        t["n"] += 1
        t["cost"] += e.cost
        t["tokens"] += e.prompt_tokens + e.completion_tokens
        self.summary.setText(
            "  ·  ".join(
                f"{app}: {int(v['n'])} requests, {int(v['tokens'])} tokens, ${v['cost']:.4f}"
                for app, v in sorted(self.totals.items())
            )
        )

    # -- apps and audit (the kernel's security API) --------------------------------------------------
    def _apps_api(self) -> Any | None:
        return getattr(self.runtime.kernel, "apps", None)

    def load_apps(self) -> None:
        api = self._apps_api()
        lister = getattr(api, "list", None) or getattr(api, "apps", None)
        if api is None or lister is None:
            self.apps_note.setText("App registration is not available in this kernel yet.")
            self.revoke_button.setEnabled(False)
            return
        try:
            apps = [a for a in lister() if not _attr(a, "builtin", default=False)]
        except Exception as e:
            self.apps_note.setText(f"Could not read the registered apps: {e}")
            return
        self.apps_note.setText(
            f"{len(apps)} registered app{'s' if len(apps) != 1 else ''}. "
            "Revoking an app invalidates its token at once."
        )
        self.app_names.update({_attr(a, "id"): _attr(a, "name", "id") for a in apps})
        self.apps.setRowCount(len(apps))
        for r, a in enumerate(apps):
            cells = [
                _attr(a, "name", "app_id", "id"),
                ", ".join(sorted(_attr(a, "scopes", default=[]) or [])),
                _when(_attr(a, "created_at", "registered_at", default=None)),
                _when(_attr(a, "last_used_at", "last_used", default=None)),
                "",
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                self.apps.setItem(r, c, item)
            self.apps.item(r, 0).setData(256, _attr(a, "id", "app_id", "name"))
            self.apps.item(r, 0).setData(ROW_DATA, a)
            self.apps.item(r, 0).setToolTip(f"app id: {_attr(a, 'id', 'app_id', 'name')}")
        self.revoke_button.setEnabled(bool(apps))
        self.apps_loading = self.run(self._load_app_usage(), name="activity-app-usage")

    async def _load_app_usage(self) -> None:
        """Last used and request counts per app, from the audit log (every request leaves a row)."""
        audit = getattr(getattr(self.runtime.kernel, "accounting", None), "audit", None)
        if audit is None:
            return
        last = await audit.last_used()
        usage = {r["app"]: r for r in await audit.usage() if r.get("app")}
        for r in range(self.apps.rowCount()):
            app_id = self.apps.item(r, 0).data(256)
            seen = last.get(app_id)
            used = usage.get(app_id) or {}
            self.apps_usage[app_id] = {**used, **({"last": seen} if seen else {})}
            if seen:
                failed = seen["outcome"] != "ok"
                text = _when(seen["ts"]) + (f" · ✗ {seen['outcome']}" if failed else "")
                self.apps.item(r, 3).setText(text)
                self.apps.item(r, 3).setToolTip(
                    f"Its latest request {outcome_words(seen['outcome'])}." if failed else "Its latest request was answered."
                )
            else:
                self.apps.item(r, 3).setText("never")
            if used:
                errors = int(used.get("errors") or 0)
                self.apps.item(r, 4).setText(
                    f"{used.get('requests', 0)}" + (f" ({errors} failed)" if errors else "")
                )
            else:
                self.apps.item(r, 4).setText("0")

    def revoke_selected(self) -> None:
        rows = self.apps.selectionModel().selectedRows()
        api = self._apps_api()
        if not rows or api is None:
            self.banner.info("Select an app first.")
            return
        app_id = self.apps.item(rows[0].row(), 0).data(256)
        try:
            revoke = api.revoke
            revoke(app_id)
        except Exception as e:
            self.banner.error(f"Could not revoke {app_id}: {e}")
            return
        self.banner.ok(f"Revoked {app_id}: its token no longer works.")
        self.load_apps()

    def load_audit(self) -> None:
        self.run(self._load_audit(), name="audit")

    async def _load_audit(self) -> None:
        """Gateway requests (kernel.accounting) and reads of personal data (kernel.personal), newest first."""
        rows: list[tuple[float, str | None, str, str, dict[str, Any]]] = []
        acc = getattr(self.runtime.kernel, "accounting", None)
        audit = getattr(acc, "audit", None)
        if audit is not None:
            for r in await audit.recent(limit=200):
                detail = (
                    f"{r.get('model', '')} · {r.get('outcome', '')} · "
                    f"{r.get('prompt_tokens', 0)}/{r.get('completion_tokens', 0)} tokens"
                )
                rows.append(
                    (float(r.get("ts") or 0), r.get("app"), r.get("endpoint") or "request", detail, r)
                )
        personal = getattr(self.runtime.kernel, "personal", None)
        if personal is not None and hasattr(personal, "audit_log"):
            for r in await personal.audit_log(limit=200):
                extra = {k: v for k, v in r.items() if k not in ("ts", "app", "action", "id")}
                rows.append(
                    (
                        float(r.get("ts") or 0),
                        r.get("app"),
                        r.get("action") or "",
                        ", ".join(f"{k}={v}" for k, v in extra.items())[:300],
                        r,
                    )
                )
        if audit is None and personal is None:
            self.audit_note.setText("The audit log is not available in this kernel.")
            return
        rows.sort(key=lambda r: r[0], reverse=True)
        self.audit_note.setText(f"Last {len(rows)} entries: every request and every read of personal data.")
        self.audit.setRowCount(len(rows))
        for i, (ts, app, action, detail, raw) in enumerate(rows):
            for c, text in enumerate((_when(ts), self.app_name(app), action, detail)):
                self.audit.setItem(i, c, QTableWidgetItem(str(text)))
            self.audit.item(i, 0).setData(ROW_DATA, raw)

    # -- a row's details -------------------------------------------------------------------------------
    def _open_row(self, table: QTableWidget, row: int, build: Any) -> DetailsDialog | None:
        first = table.item(row, 0)
        data = first.data(ROW_DATA) if first is not None else None
        if data is None:
            return None
        title, fields = build(data)
        if self.details is not None:
            self.details.close()
        self.details = DetailsDialog(title, fields, self)
        self.details.open()  # no nested event loop: the kernel keeps running
        return self.details

    def open_row(self, table: QTableWidget, row: int) -> DetailsDialog | None:
        """What a double-click (or Enter) on a row does."""
        opener = {id(self.requests): self._request_details, id(self.apps): self._app_details,
                  id(self.audit): self._audit_details}[id(table)]
        return self._open_row(table, row, opener)

    def _outcome_text(self, e: Any) -> str:
        outcome = _attr(e, "outcome", default="")
        if outcome == "ok":
            return "answered"
        error = in_words(str(_attr(e, "error", "detail", "message", default="") or ""))
        words = outcome_words(outcome)
        return f"{words} ({outcome}): {error}" if error else f"{words} ({outcome})"

    def _request_details(self, e: Any) -> tuple[str, list[tuple[str, str]]]:
        app = _attr(e, "app", default=None)
        return "Request", [
            ("When", _when(_attr(e, "ts", default=None))),
            ("App", f"{self.app_name(app)} ({app})" if app else "the kernel's own callers (command line)"),
            ("Model", model_label_for(_attr(e, "model"), self.runtime.all_models())),
            ("Endpoint", str(_attr(e, "endpoint", default="") or "")),
            ("Streamed", "yes" if _attr(e, "stream", default=False) else "no"),
            ("Tokens in / out", f"{_attr(e, 'prompt_tokens', default=0)} / {_attr(e, 'completion_tokens', default=0)}"),
            ("Cost", f"${float(_attr(e, 'cost', default=0) or 0):.4f}"),
            ("Latency", f"{float(_attr(e, 'latency_ms', default=0) or 0):.0f} ms"),
            ("Outcome", self._outcome_text(e)),
        ]

    def _app_details(self, a: Any) -> tuple[str, list[tuple[str, str]]]:
        app_id = _attr(a, "id", "app_id", "name")
        used = self.apps_usage.get(app_id, {})
        last = used.get("last")
        limits = _attr(a, "limits", default=None)
        limit_bits = [
            f"{limits.rate_limit_rpm} requests/min" if limits and limits.rate_limit_rpm else "",
            f"{limits.daily_token_budget} tokens/day" if limits and limits.daily_token_budget else "",
            f"${limits.daily_cost_budget}/day" if limits and limits.daily_cost_budget else "",
        ]
        return f"App {_attr(a, 'name', 'id')}", [
            ("Name", str(_attr(a, "name", "id"))),
            ("App id", str(app_id)),
            ("Scopes", ", ".join(_attr(a, "scopes", default=[]) or []) or "none"),
            ("Token", f"{_attr(a, 'token_hint', default='')}…"),
            ("Registered", _when(_attr(a, "created_at", default=None))),
            ("Limits", ", ".join(b for b in limit_bits if b) or "none"),
            ("Requests", f"{used.get('requests', 0)} ({used.get('errors', 0)} failed)"),
            ("Last used", _when(last["ts"]) if last else "never"),
            ("Latest outcome", self._outcome_text(last) if last else "—"),
        ]

    def _audit_details(self, r: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
        if "outcome" in r:  # a request's row
            return self._request_details(r)
        app = r.get("app")
        return "Audit entry", [
            ("When", _when(r.get("ts"))),
            ("App", f"{self.app_name(app)} ({app})" if app else "you (no app)"),
            ("Action", str(r.get("action") or "")),
            *((str(k), str(v)) for k, v in r.items() if k not in ("ts", "app", "action", "id")),
        ]


def _attr(obj: Any, *names: str, default: Any = "") -> Any:
    for n in names:
        v = obj.get(n) if isinstance(obj, dict) else getattr(obj, n, None)
        if v is not None:
            return v
    return default


def _when(ts: Any) -> str:
    if isinstance(ts, (int, float)) and ts > 0:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return str(ts) if ts else "—"
