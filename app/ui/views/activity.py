"""The Activity view: requests per app (model, tokens, cost, latency, outcome), registered apps
and their scopes (revoke), and the audit log — from the kernel's events and security APIs."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtWidgets import (
    QAbstractItemView,
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

REQUEST_COLUMNS = ["Time", "App", "Model", "Tokens in/out", "Cost", "Latency", "Outcome"]
MAX_ROWS = 500


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
        self.apps = _table(["App", "Scopes", "Registered", "Last used"], apps, "Registered apps")
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
        self._history_loaded = False
        runtime.bridge.requestFinished.connect(self.add_request)
        self.tabs.currentChanged.connect(lambda _i: self.activated())

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

    def add_request(self, e: Any, *, at_bottom: bool = False) -> None:
        row = self.requests.rowCount() if at_bottom else 0
        self.requests.insertRow(row)
        cells = [
            time.strftime("%H:%M:%S", time.localtime(e.ts)),
            e.app or "—",
            e.model,
            f"{e.prompt_tokens} / {e.completion_tokens}",
            f"${e.cost:.4f}" if e.cost else "—",
            f"{e.latency_ms:.0f} ms",
            "ok" if e.outcome == "ok" else f"✗ {e.outcome}",
        ]
        for c, text in enumerate(cells):
            self.requests.setItem(row, c, QTableWidgetItem(text))
        if self.requests.rowCount() > MAX_ROWS:
            self.requests.removeRow(self.requests.rowCount() - 1)
        t = self.totals.setdefault(e.app or "—", {"n": 0, "cost": 0.0, "tokens": 0})
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
        self.apps.setRowCount(len(apps))
        for r, a in enumerate(apps):
            cells = [
                _attr(a, "name", "app_id", "id"),
                ", ".join(sorted(_attr(a, "scopes", default=[]) or [])),
                _when(_attr(a, "created_at", "registered_at", default=None)),
                _when(_attr(a, "last_used_at", "last_used", default=None)),
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                self.apps.setItem(r, c, item)
            self.apps.item(r, 0).setData(256, _attr(a, "id", "app_id", "name"))
        self.revoke_button.setEnabled(bool(apps))

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
        rows: list[tuple[float, str, str, str]] = []
        acc = getattr(self.runtime.kernel, "accounting", None)
        audit = getattr(acc, "audit", None)
        if audit is not None:
            for r in await audit.recent(limit=200):
                detail = (
                    f"{r.get('model', '')} · {r.get('outcome', '')} · "
                    f"{r.get('prompt_tokens', 0)}/{r.get('completion_tokens', 0)} tokens"
                )
                rows.append(
                    (float(r.get("ts") or 0), r.get("app") or "—", r.get("endpoint") or "request", detail)
                )
        personal = getattr(self.runtime.kernel, "personal", None)
        if personal is not None and hasattr(personal, "audit_log"):
            for r in await personal.audit_log(limit=200):
                extra = {k: v for k, v in r.items() if k not in ("ts", "app", "action", "id")}
                rows.append(
                    (
                        float(r.get("ts") or 0),
                        r.get("app") or "—",
                        r.get("action") or "",
                        ", ".join(f"{k}={v}" for k, v in extra.items())[:300],
                    )
                )
        if audit is None and personal is None:
            self.audit_note.setText("The audit log is not available in this kernel.")
            return
        rows.sort(key=lambda r: r[0], reverse=True)
        self.audit_note.setText(f"Last {len(rows)} entries: every request and every read of personal data.")
        self.audit.setRowCount(len(rows))
        for i, (ts, app, action, detail) in enumerate(rows):
            for c, text in enumerate((_when(ts), app, action, detail)):
                self.audit.setItem(i, c, QTableWidgetItem(str(text)))


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
