"""The Personalization view: the PSP exactly as the next request would receive it (live preview
for a chosen app and question), its four layers and why each item is there, Core rules
(edit, pin), the HiNATA memory (search, forget), per-app injection switches, pause, export
and delete-all with confirmation. Everything goes through `kernel.personal`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.views.base import View

YOU = "(you — no app)"
LAYERS = ("core", "working", "context", "buffer")


class PersonalizationView(View):
    title = "Personalization"
    icon_name = "personalization"
    subtitle = (
        "Your Personal System Prompt: what apps that opted in receive with each request, "
        "and the memory it is built from. Nothing leaves this machine."
    )

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(runtime, parent)
        self.psp: Any = None
        self._previews = 0  # previews asked for: only the latest one's answer is shown
        self.refreshing: asyncio.Task[Any] | None = None  # the refresh `activated` started
        self.records: list[dict[str, Any]] = []

        top = QHBoxLayout()
        top.addWidget(QLabel("Preview for"))
        self.app_box = QComboBox(self)
        self.app_box.setEditable(True)
        self.app_box.setAccessibleName("App to preview the PSP for")
        self.app_box.setMinimumWidth(150)
        self.question = QLineEdit(self)
        self.question.setMinimumWidth(220)  # a question, not a few letters, at the smallest window
        self.question.setPlaceholderText("and this question (optional)…")
        self.question.setAccessibleName("Question to preview the PSP for")
        self.question.returnPressed.connect(self.preview)
        preview = QPushButton("Preview", self)
        preview.clicked.connect(self.preview)
        self.pause = QCheckBox("Pause personalization", self)
        self.pause.setToolTip("While paused, no app receives a PSP")
        self.pause.toggled.connect(self.set_paused)
        # The pause switch sits with the other whole-store actions at the bottom: on this row it
        # squeezed the question field at the window's minimum width.
        for w, stretch in ((self.app_box, 0), (self.question, 1), (preview, 0)):
            top.addWidget(w, stretch)
        self.body.addLayout(top)

        split = QSplitter(Qt.Orientation.Horizontal, self)
        left = QWidget(split)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.psp_info = QLabel("", left)
        self.psp_info.setObjectName("Muted")
        self.psp_info.setWordWrap(True)
        self.psp_text = QTextBrowser(left)
        self.psp_text.setAccessibleName("Personal System Prompt preview")
        self.layers = QTreeWidget(left)
        self.layers.setHeaderLabels(["Layer / item", "Score", "Tokens"])
        self.layers.setAccessibleName("PSP layers and why each item is included")
        self.layers.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):  # narrow number columns: the item's text gets the width
            self.layers.header().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.layers.header().setStretchLastSection(False)
        ll.addWidget(self.psp_info)
        ll.addWidget(self.psp_text, 3)
        ll.addWidget(self.layers, 2)

        self.tabs = QTabWidget(split)
        self.tabs.addTab(self._rules_tab(), "Core rules")
        self.tabs.addTab(self._memory_tab(), "Memory")
        self.tabs.addTab(self._apps_tab(), "Apps")
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.body.addWidget(split, 1)

        bottom = QHBoxLayout()
        self.status = QLabel("", self)
        self.status.setObjectName("Muted")
        export = QPushButton("Export everything…", self)
        export.clicked.connect(self.choose_export)
        delete_all = QPushButton("Delete everything…", self)
        delete_all.clicked.connect(self.confirm_delete_all)
        bottom.addWidget(self.pause)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(export)
        bottom.addWidget(delete_all)
        self.body.addLayout(bottom)
        runtime.bridge.personalChanged.connect(self._on_changed)

    # -- building blocks -------------------------------------------------------------------------
    def _rules_tab(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        hint = QLabel("Stable preferences every PSP starts with. Checked = pinned (always included).", w)
        hint.setWordWrap(True)
        hint.setObjectName("Muted")
        self.rules = QListWidget(w)
        self.rules.setAccessibleName("Core rules")
        self.rules.itemChanged.connect(self._rule_edited)
        row = QHBoxLayout()
        self.new_rule = QLineEdit(w)
        self.new_rule.setPlaceholderText("e.g. Answer in British English; keep code in Python 3.11")
        self.new_rule.setAccessibleName("New Core rule")
        self.new_rule.setMinimumWidth(170)
        self.new_rule.returnPressed.connect(self.add_rule)
        self.new_pinned = QCheckBox("Pin", w)
        add = QPushButton("Add", w)
        add.clicked.connect(self.add_rule)
        remove = QPushButton("Remove selected", w)
        remove.clicked.connect(self.remove_rule)
        row.addWidget(self.new_rule, 1)
        row.addWidget(self.new_pinned)
        row.addWidget(add)
        lay.addWidget(hint)
        lay.addWidget(self.rules, 1)
        lay.addLayout(row)
        lay.addWidget(remove, 0, Qt.AlignmentFlag.AlignRight)
        return w

    def _memory_tab(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.search = QLineEdit(w)
        self.search.setPlaceholderText("Search what apps told ByenatOS you cared about…")
        self.search.setAccessibleName("Search memory")
        self.search.returnPressed.connect(self.load_records)
        self.table = QTableWidget(0, 3, w)
        self.table.setHorizontalHeaderLabels(["When", "From", "Highlight"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAccessibleName("Memory records")
        self.memory_count = QLabel("", w)
        self.memory_count.setObjectName("Muted")
        forget = QPushButton("Forget selected", w)
        forget.clicked.connect(self.forget_selected)
        row = QHBoxLayout()
        row.addWidget(self.memory_count, 1)
        row.addWidget(forget)
        lay.addWidget(self.search)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)
        return w

    def _apps_tab(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        hint = QLabel("Apps that receive your PSP with their requests. Off by default for every app.", w)
        hint.setWordWrap(True)
        hint.setObjectName("Muted")
        self.injection = QListWidget(w)
        self.injection.setAccessibleName("Per-app injection switches")
        self.injection.itemChanged.connect(self._injection_toggled)
        lay.addWidget(hint)
        lay.addWidget(self.injection, 1)
        return w

    # -- the kernel API ------------------------------------------------------------------------------
    @property
    def personal(self) -> Any:
        return getattr(self.runtime.kernel, "personal", None)

    def _caller(self, app: str | None = None) -> Any:
        from app.kernel.personal.service import Caller

        if not app:
            return Caller.user()
        scopes: frozenset[str] = frozenset({"psp:read"})
        apps = getattr(self.runtime.kernel, "apps", None)
        try:
            if apps is not None:
                scopes = frozenset(apps.get(app).scopes)
        except Exception:  # an app not registered (yet): preview as an app with no extra scopes
            pass
        return Caller(app, scopes)

    def activated(self) -> None:
        if self.personal is None:
            self.banner.info("Personalization is not part of this kernel.")
            return
        self.pause.blockSignals(True)
        self.pause.setChecked(bool(self.personal.paused))
        self.pause.blockSignals(False)
        self._fill_apps()
        self.refreshing = self.run(self.refresh_all(), name="personal-refresh")

    async def refresh_all(self) -> None:
        await self.load_rules()
        await self._load_records()
        await self._preview()

    def _fill_apps(self) -> None:
        known = dict(self.personal.apps())
        apps = getattr(self.runtime.kernel, "apps", None)
        if apps is not None:
            for a in apps.list():
                if not a.builtin:
                    known.setdefault(a.id, False)
        current = self.app_box.currentText()
        self.app_box.blockSignals(True)
        self.app_box.clear()
        self.app_box.addItem(YOU)
        self.app_box.addItems(sorted(known))
        self.app_box.setCurrentText(current or YOU)
        self.app_box.blockSignals(False)
        self.injection.blockSignals(True)
        self.injection.clear()
        for app_id in sorted(known):
            item = QListWidgetItem(app_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if known[app_id] else Qt.CheckState.Unchecked)
            self.injection.addItem(item)
        if not known:
            self.injection.addItem("No app has registered yet.")
        self.injection.blockSignals(False)

    # -- PSP preview ------------------------------------------------------------------------------
    def selected_app(self) -> str | None:
        text = self.app_box.currentText().strip()
        return None if not text or text == YOU else text

    def preview(self) -> asyncio.Task[Any]:
        return self.run(self._preview(), name="psp-preview")

    async def _preview(self) -> None:
        personal = self.personal
        if personal is None:
            return
        self._previews = asked = self._previews + 1
        psp = await personal.build_psp(self._caller(self.selected_app()), self.question.text().strip())
        if asked != self._previews:
            return  # a newer preview (another app, another question) was asked for meanwhile: its answer shows
        self.psp = psp
        if psp.version is None or not psp.text:
            self.psp_text.setMarkdown("*Nothing to inject yet: add Core rules, or let apps send memories.*")
        else:
            self.psp_text.setMarkdown(psp.text)
        who = self.selected_app() or "you"
        paused = " · PAUSED: no app receives it now" if personal.paused else ""
        self.psp_info.setText(
            f"For {who}: {psp.tokens} of {psp.budget} tokens, {len(psp.items)} items, "
            f"{psp.retrieval} retrieval, built in {psp.took_ms:.0f} ms{paused}"
        )
        self.layers.clear()
        for layer in LAYERS:
            items = [i for i in psp.items if i.layer == layer]
            node = QTreeWidgetItem(
                [
                    f"{layer.title()} — {len(items)} item{'s' if len(items) != 1 else ''}",
                    "",
                    f"{sum(i.tokens for i in items)} / {psp.layer_budgets.get(layer, 0)}",
                ]
            )
            for i in items:
                # the ranking score is the weighted "total"; Core rules are not ranked (pinned or not)
                total = i.scores.get("total") if i.scores else None
                shown = f"{total:.2f}" if total is not None else ("pinned" if i.scores.get("pinned") else "rule")
                child = QTreeWidgetItem([i.line.lstrip("- ")[:140], shown, str(i.tokens)])
                child.setToolTip(0, "\n".join(f"{k}: {v:.2f}" for k, v in i.scores.items()) or i.kind)
                node.addChild(child)
            self.layers.addTopLevelItem(node)
            node.setExpanded(True)

    # -- rules ------------------------------------------------------------------------------------------
    async def load_rules(self) -> None:
        rules = await self.personal.rules(self._caller())
        self.rules.blockSignals(True)
        self.rules.clear()
        for r in rules:
            item = QListWidgetItem(r["text"])
            item.setData(Qt.ItemDataRole.UserRole, r["id"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEditable)
            item.setCheckState(Qt.CheckState.Checked if r.get("pinned") else Qt.CheckState.Unchecked)
            self.rules.addItem(item)
        self.rules.blockSignals(False)

    def add_rule(self) -> asyncio.Task[Any] | None:
        text = self.new_rule.text().strip()
        if not text:
            return None

        async def go() -> None:
            await self.personal.add_rule(text, self.new_pinned.isChecked(), self._caller())
            self.new_rule.clear()
            await self.load_rules()
            await self._preview()

        return self.run(go(), name="rule-add")

    def _rule_edited(self, item: QListWidgetItem) -> None:
        rule_id = item.data(Qt.ItemDataRole.UserRole)

        async def go() -> None:
            await self.personal.update_rule(
                rule_id, self._caller(), text=item.text(), pinned=item.checkState() == Qt.CheckState.Checked
            )
            await self._preview()

        self.run(go(), name="rule-edit")

    def remove_rule(self) -> asyncio.Task[Any] | None:
        item = self.rules.currentItem()
        if item is None:
            self.banner.info("Select a rule first.")
            return None

        async def go() -> None:
            await self.personal.delete_rule(item.data(Qt.ItemDataRole.UserRole), self._caller())
            await self.load_rules()
            await self._preview()

        return self.run(go(), name="rule-remove")

    # -- memory -----------------------------------------------------------------------------------------
    def load_records(self) -> asyncio.Task[Any]:
        return self.run(self._load_records(), name="memory-search")

    async def _load_records(self) -> None:
        text = self.search.text().strip() or None
        result = await self.personal.search(self._caller(), text=text, limit=200)
        self.records = result["data"]
        self.table.setRowCount(len(self.records))
        for r, rec in enumerate(self.records):
            when = str(rec["timestamp"])[:16].replace("T", " ")
            cells = [when, rec["source"], (rec["highlight"] or rec["note"] or rec["address"] or "")[:300]]
            for c, value in enumerate(cells):
                item = QTableWidgetItem(value)
                item.setToolTip(rec.get("note") or value)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self.memory_count.setText(
            f"{len(self.records)} of {result['total']} records" + (f" matching “{text}”" if text else "")
        )

    def forget_selected(self) -> asyncio.Task[Any] | None:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        if not rows:
            self.banner.info("Select the records to forget first.")
            return None
        ids = [self.records[r]["id"] for r in rows]

        async def go() -> None:
            for rid in ids:
                await self.personal.delete(rid, self._caller())
            await self._load_records()
            await self._preview()
            self.banner.ok(f"Forgot {len(ids)} record{'s' if len(ids) != 1 else ''}.")

        return self.run(go(), name="memory-forget")

    # -- controls ----------------------------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        try:
            self.personal.set_paused(paused)
        except Exception as e:
            self.banner.error(f"Could not change the pause switch: {e}")
            return
        self.status.setText(
            "Personalization paused: no app receives a PSP."
            if paused
            else "Personalization is on for the apps switched on under Apps."
        )
        self.preview()

    def _injection_toggled(self, item: QListWidgetItem) -> None:
        try:
            self.personal.set_injection(item.text(), item.checkState() == Qt.CheckState.Checked)
        except Exception as e:
            self.banner.error(f"Could not change {item.text()}: {e}")

    def choose_export(self) -> QFileDialog:
        dialog = QFileDialog(
            self,
            "Export your personal data",
            str(Path.home() / "byenatos-personal.jsonl"),
            "JSON Lines (*.jsonl)",
        )
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.fileSelected.connect(lambda path: self.export_to(Path(path)))
        dialog.open()  # no nested event loop: the kernel keeps serving while the dialog is up
        return dialog

    def export_to(self, path: Path) -> asyncio.Task[Any]:
        async def go() -> None:
            n = 0
            chunks: list[bytes] = []
            async for chunk in self.personal.export(self._caller()):
                chunks.append(chunk)
                n += chunk.count(b"\n")
            await asyncio.to_thread(path.write_bytes, b"".join(chunks))
            self.banner.ok(f"Exported {n} lines to {path}.")

        return self.run(go(), name="personal-export")

    def confirm_delete_all(self) -> QMessageBox:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Delete everything",
            "Delete every memory record, Core rule and derived datum? This cannot be undone. "
            "(Export first if you may want them back.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda button: button == QMessageBox.StandardButton.Yes and self.delete_all())
        box.open()
        self._confirm = box
        return box

    def delete_all(self) -> asyncio.Task[Any]:
        async def go() -> None:
            n = await self.personal.delete_all(self._caller())
            await self.refresh_all()
            self.banner.ok(f"Deleted {n} records and every Core rule.")

        return self.run(go(), name="personal-delete-all")

    # -- events --------------------------------------------------------------------------------------------
    def _on_changed(self, _event: Any) -> None:
        if self.isVisible() and self.runtime.started:
            self.run(self.refresh_all(), name="personal-refresh")
