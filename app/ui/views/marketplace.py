"""The Marketplace / registry view: every known model, filters, "fits your machine" badges,
adding providers (key into the keyring, test connection), GGUF downloads from Hugging Face."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.kernel.canonical import ModelSpec
from app.kernel.models.presets import PRESETS
from app.ui.tasks import readable
from app.ui.views.base import View
from app.ui.widgets.model_card import context_label, human_bytes

PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # what the registry takes as a provider id
COLUMNS = ["Model", "Provider", "Where", "Context", "Price in/out ($/M)", "Size", "Fits", "Capabilities"]


NOT_APPLICABLE = "n/a"


def fit_badge(spec: ModelSpec, ram_total: int, vram_total: int = 0) -> tuple[str, str]:
    """("fits" | "tight" | "too big" | "n/a", pill state) for a model on this machine.

    Only a local model of known size gets a fit: a cloud model, or one a server serves without
    saying how big it is, has nothing to fit here ("n/a", and the fits filter keeps it)."""
    need = spec.memory_bytes
    if not spec.local or not need:
        return NOT_APPLICABLE, ""
    room = max(ram_total, vram_total)
    if need <= 0.6 * room:
        return "fits", "fits"
    if need <= 0.85 * room:
        return "tight", "tight"
    return "too big", "toobig"


def fit_note(spec: ModelSpec) -> str:
    """Why a model has no fit value (the cell's tooltip)."""
    if not spec.local:
        return f"Runs on {spec.provider}'s servers: nothing to fit on this machine."
    if not spec.memory_bytes:
        return f"Served by {spec.provider}, which does not say how much memory it takes."
    return "Compared with this machine's RAM (or VRAM, if larger)."


def capabilities(spec: ModelSpec) -> str:
    c = spec.capabilities
    return (
        ", ".join(
            n
            for n, on in (
                ("tools", c.tools),
                ("vision", c.vision),
                ("json", c.json_mode),
                ("embeddings", c.embeddings),
            )
            if on
        )
        or "chat"
    )


class _SortItem(QTableWidgetItem):
    """A cell that sorts by a number while showing text."""

    def __init__(self, text: str, key: float) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.key < getattr(other, "key", 0)


class AddProviderDialog(QDialog):
    """Pick a preset (or a custom OpenAI-compatible URL), paste a key, test, save."""

    def __init__(self, view: MarketplaceView) -> None:
        super().__init__(view)
        self.view = view
        self.setWindowTitle("Add a provider")
        self.setMinimumWidth(460)
        form = QFormLayout()
        self.preset = QComboBox(self)
        self.preset.setAccessibleName("Provider")
        # Any OpenAI-compatible server first (and chosen): what most people add by hand.
        self.preset.addItem("OpenAI-compatible server (any URL)", "")
        for p in sorted(PRESETS.values(), key=lambda p: (p.local, p.display_name.lower())):
            self.preset.addItem(f"{p.display_name}{' (local)' if p.local else ''}", p.id)
        self.preset.setCurrentIndex(0)
        self.ident = QLineEdit(self)
        self.ident.setAccessibleName("Provider name")
        self.url = QLineEdit(self)
        self.key = QLineEdit(self)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("stored in your OS keyring, never in a file")
        form.addRow("Provider", self.preset)
        form.addRow("Name", self.ident)
        form.addRow("URL", self.url)
        form.addRow("API key", self.key)
        self.result_label = QLabel("", self)
        self.result_label.setWordWrap(True)
        self.test_button = QPushButton("Test connection", self)
        self.test_button.clicked.connect(self.test)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.test_button)
        row.addWidget(self.result_label, 1)
        layout.addLayout(row)
        layout.addWidget(buttons)
        self.preset.currentIndexChanged.connect(self._preset_changed)
        self._preset_changed()
        self.task: asyncio.Task[Any] | None = None

    def _preset_changed(self) -> None:
        pid = self.preset.currentData()
        p = PRESETS.get(pid) if pid else None
        self.ident.setText(p.id if p else "")
        self.ident.setReadOnly(p is not None)
        self.ident.setPlaceholderText("" if p else "a short name for it, e.g. my-server")
        self.url.setText((p.base_url or "") if p else "http://127.0.0.1:8000/v1")
        self.key.setEnabled(p is None or p.key_required)
        self.key.setPlaceholderText(
            "stored in your OS keyring, never in a file"
            if self.key.isEnabled()
            else "not needed for this provider"
        )

    def fields(self) -> dict[str, Any]:
        pid = self.preset.currentData()
        p = PRESETS.get(pid) if pid else None
        return {
            "id": self.ident.text().strip(),
            "kind": p.kind if p else "openai",
            "base_url": self.url.text().strip() or None,
            "api_key": self.key.text().strip() or None,
        }

    def problem(self) -> str | None:
        """What is missing or wrong in the form, in words (None when it can be tried)."""
        name = self.ident.text().strip()
        if not name:
            return "Give this provider a name: a short word such as my-server (it goes before its models' names)."
        if not PROVIDER_NAME.fullmatch(name):
            return (
                f"“{name}” cannot be a provider name: use lower-case letters, digits and - . _ "
                "only, starting with a letter or digit (e.g. my-server)."
            )
        if not self.url.text().strip() and self.preset.currentData() == "":
            return "Give the server's address, e.g. http://127.0.0.1:8000/v1."
        return None

    def test(self) -> asyncio.Task[Any] | None:
        problem = self.problem()
        if problem:
            self.result_label.setText(f"✗ {problem}")
            return None
        self.result_label.setText("Testing…")
        self.test_button.setEnabled(False)
        self.task = self.view.run(self._test(save=False), name="provider-test")
        return self.task

    def save(self) -> asyncio.Task[Any] | None:
        problem = self.problem()
        if problem:
            self.result_label.setText(f"✗ {problem}")
            return None
        self.result_label.setText("Saving…")
        self.task = self.view.run(self._test(save=True), name="provider-save")
        return self.task

    async def _test(self, *, save: bool) -> None:
        f = self.fields()
        kernel = self.view.runtime.kernel
        existed = f["id"] in kernel.registry.provider_ids()
        try:
            await kernel.add_provider(f["id"], f["kind"], base_url=f["base_url"], api_key=f["api_key"])
            health = await kernel.provider_health(f["id"])
            if health.ok:
                n = await kernel.refresh_provider(f["id"])
                self.result_label.setText(f"✓ Connected — {n} model{'s' if n != 1 else ''} found.")
            else:
                self.result_label.setText(f"✗ Not reachable: {health.detail or 'no answer'}")
                if not save and not existed:
                    await kernel.remove_provider(f["id"])
                return
        except Exception as e:
            self.result_label.setText(f"✗ {readable(e)}")
            return
        finally:
            self.test_button.setEnabled(True)
        self.view.refresh()
        if save:
            self.accept()


class DownloadRow(QWidget):
    def __init__(self, view: MarketplaceView, download: Any) -> None:
        super().__init__(view)
        self.view, self.download = view, download
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.name = QLabel(download.remote.filename, self)
        self.bar = QProgressBar(self)
        self.bar.setAccessibleName(f"Download progress of {download.remote.filename}")
        self.info = QLabel("", self)
        self.info.setObjectName("Muted")
        self.pause = QPushButton("Pause", self)
        self.pause.clicked.connect(self.toggle)
        self.cancel = QPushButton("Cancel", self)
        self.cancel.clicked.connect(lambda: view.run(download.cancel()))
        for w, stretch in ((self.name, 0), (self.bar, 1), (self.info, 0), (self.pause, 0), (self.cancel, 0)):
            layout.addWidget(w, stretch)

    def toggle(self) -> None:
        d = self.download
        if d.state.value == "running":
            self.view.run(d.pause())
        else:
            d.resume()

    def update_from(self, event: Any) -> None:
        total = event.total or 0
        self.bar.setRange(0, 1000 if total else 0)
        if total:
            self.bar.setValue(int(1000 * event.received / total))
        state = event.state
        rate = (
            f" · {human_bytes(int(event.bytes_per_second))}/s"
            if state == "running" and event.bytes_per_second
            else ""
        )
        text = {
            "running": f"{human_bytes(event.received)} of {human_bytes(total)}{rate}",
            "paused": "paused",
            "verifying": "checking SHA-256…",
            "done": "✓ downloaded and verified",
            "cancelled": "cancelled",
            "failed": f"✗ {event.error}",
        }.get(state, state)
        self.info.setText(text)
        self.info.setToolTip(event.error)
        self.pause.setText("Pause" if state == "running" else "Resume")
        self.pause.setEnabled(state in ("running", "paused", "failed"))
        self.cancel.setEnabled(state not in ("done", "cancelled"))


class MarketplaceView(View):
    title = "Marketplace"
    icon_name = "marketplace"
    subtitle = "Every model ByenatOS knows — local and cloud. Add providers and download GGUF models."

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(runtime, parent)
        self._downloads: Any = None
        self.remove_task: asyncio.Task[Any] | None = None
        self.rows: dict[str, DownloadRow] = {}
        self.remote_files: list[Any] = []

        filters = QHBoxLayout()
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search models…")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search models")
        self.provider = QComboBox(self)
        self.provider.setAccessibleName("Provider filter")
        self.where = QComboBox(self)
        self.where.addItems(["Local and cloud", "Local", "Cloud"])
        self.where.setAccessibleName("Local or cloud filter")
        self.capability = QComboBox(self)
        self.capability.addItems(["Any capability", "tools", "vision", "json", "embeddings"])
        self.capability.setAccessibleName("Capability filter")
        self.fits_only = QCheckBox("Fits my machine", self)
        self.fits_only.setToolTip(
            "Hide local models too big for this machine's memory. Cloud models, and servers that "
            "do not say how big their models are, stay (their fit is n/a)."
        )
        for w in (self.search, self.provider, self.where, self.capability, self.fits_only):
            filters.addWidget(w, 2 if w is self.search else 0)
        self.body.addLayout(filters)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAlternatingRowColors(True)
        self.table.setAccessibleName("Models")
        self.body.addWidget(self.table, 1)
        self.count = QLabel("", self)
        self.count.setObjectName("Muted")

        actions = QHBoxLayout()
        add = QPushButton("Add provider…", self)
        add.clicked.connect(self.add_provider)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Remove the selected downloaded model file, or its provider")
        self.remove_button.clicked.connect(self.remove_selected)
        scan = QPushButton("Scan this machine", self)
        scan.clicked.connect(lambda: self.run(self._scan(), name="scan"))
        actions.addWidget(self.count, 1)
        for b in (add, self.remove_button, scan):
            actions.addWidget(b)
        self.body.addLayout(actions)

        dl = QGroupBox("Download a GGUF model from Hugging Face", self)
        dlay = QVBoxLayout(dl)
        row = QHBoxLayout()
        self.repo = QLineEdit(dl)
        self.repo.setPlaceholderText("owner/repo, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
        self.repo.setAccessibleName("Hugging Face repo")
        self.list_button = QPushButton("List files", dl)
        self.list_button.clicked.connect(self.list_files)
        self.files = QComboBox(dl)
        self.files.setAccessibleName("GGUF file")
        self.files.setMinimumWidth(260)
        self.download_button = QPushButton("Download", dl)
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download_selected)
        for w, s in ((self.repo, 2), (self.list_button, 0), (self.files, 1), (self.download_button, 0)):
            row.addWidget(w, s)
        dlay.addLayout(row)
        self.download_list = QVBoxLayout()
        dlay.addLayout(self.download_list)
        self.body.addWidget(dl)

        for sig in (
            self.search.textChanged,
            self.provider.currentIndexChanged,
            self.where.currentIndexChanged,
            self.capability.currentIndexChanged,
            self.fits_only.toggled,
        ):
            sig.connect(self._apply_filters)
        runtime.bridge.modelsChanged.connect(self.refresh)
        runtime.bridge.downloadProgress.connect(self._on_progress)
        self.refresh()

    # -- the table ---------------------------------------------------------------------------------
    def machine_memory(self) -> tuple[int, int]:
        last = self.runtime.sampler.history[-1] if self.runtime.sampler.history else None
        if last is None:
            import psutil

            return psutil.virtual_memory().total, 0
        return last.ram_total, max((g.vram_total for g in last.gpus), default=0)

    def refresh(self, *_: object) -> None:
        models = self.runtime.all_models()
        ram, vram = self.machine_memory()
        providers = sorted({m.provider for m in models})
        keep = self.provider.currentData()
        self.provider.blockSignals(True)
        self.provider.clear()
        self.provider.addItem("All providers", "")
        for p in providers:
            self.provider.addItem(p, p)
        if keep in providers:
            self.provider.setCurrentIndex(providers.index(keep) + 1)
        self.provider.blockSignals(False)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(models))
        for r, m in enumerate(models):
            fit, _ = fit_badge(m, ram, vram)
            fit_item = QTableWidgetItem(fit)
            fit_item.setToolTip(fit_note(m))
            price = (
                f"{m.input_cost_per_token * 1e6:.2f} / {m.output_cost_per_token * 1e6:.2f}"
                if (m.input_cost_per_token or m.output_cost_per_token)
                else ("free" if m.local else "—")
            )
            cells = [
                QTableWidgetItem(m.display_name or m.name),
                QTableWidgetItem(m.provider),
                QTableWidgetItem("local" if m.local else "cloud"),
                _SortItem(context_label(m.context_window), m.context_window),
                _SortItem(price, m.input_cost_per_token),
                _SortItem(human_bytes(m.memory_bytes) if m.memory_bytes else "—", m.memory_bytes or 0),
                fit_item,
                QTableWidgetItem(capabilities(m)),
            ]
            cells[0].setData(Qt.ItemDataRole.UserRole, m.id)
            cells[0].setToolTip(m.id)
            for c, item in enumerate(cells):
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self._apply_filters()

    def _apply_filters(self) -> None:
        needle = self.search.text().strip().lower()
        provider = self.provider.currentData() or ""
        where = self.where.currentText()
        cap = self.capability.currentText()
        shown = 0
        for r in range(self.table.rowCount()):
            name_item = self.table.item(r, 0)
            mid = name_item.data(Qt.ItemDataRole.UserRole) if name_item else ""
            row_where = self.table.item(r, 2).text()
            ok = (
                (not needle or needle in mid.lower() or needle in name_item.text().lower())
                and (not provider or self.table.item(r, 1).text() == provider)
                and (where == "Local and cloud" or row_where == where.lower())
                and (cap == "Any capability" or cap in self.table.item(r, 7).text())
                and (
                    not self.fits_only.isChecked()
                    or self.table.item(r, 6).text() in ("fits", "tight", NOT_APPLICABLE)
                )
            )
            self.table.setRowHidden(r, not ok)
            shown += ok
        self.count.setText(f"{shown} of {self.table.rowCount()} models")

    def visible_model_ids(self) -> list[str]:
        return [
            self.table.item(r, 0).data(Qt.ItemDataRole.UserRole)
            for r in range(self.table.rowCount())
            if not self.table.isRowHidden(r)
        ]

    def selected_model(self) -> ModelSpec | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        mid = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
        return next((m for m in self.runtime.all_models() if m.id == mid), None)

    # -- providers and removal ------------------------------------------------------------------------
    def add_provider(self) -> AddProviderDialog:
        dialog = AddProviderDialog(self)
        dialog.open()  # window-modal without a nested event loop: the kernel keeps running
        return dialog

    def remove_selected(self) -> None:
        spec = self.selected_model()
        if spec is None:
            self.banner.info("Select a model first.")
            return
        models_dir = self.runtime.kernel.paths.models_dir
        path = Path(spec.path) if spec.path else None
        if path is not None and path.resolve().parent == models_dir.resolve():
            question = f"Delete the downloaded file {path.name} ({human_bytes(spec.memory_bytes)})?"
            action = self._delete_file(path)
        else:
            question = (
                f"{spec.id} comes from the provider {spec.provider!r}. Remove that provider "
                "and all its models? (Its key is removed from the keyring too.)"
            )
            action = self._remove_provider(spec.provider)
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Remove",
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.No)

        def answered(button: int) -> None:
            if button == QMessageBox.StandardButton.Yes:
                self.remove_task = self.run(action, name="remove")
            else:
                action.close()

        box.finished.connect(answered)
        box.open()
        self._confirm = box

    async def _delete_file(self, path: Path) -> None:
        await asyncio.to_thread(path.unlink, True)
        await self._scan()
        self.banner.ok(f"Deleted {path.name}.")

    async def _remove_provider(self, provider: str) -> None:
        await self.runtime.kernel.remove_provider(provider)
        self.refresh()
        self.banner.ok(f"Removed the provider {provider}.")

    async def _scan(self) -> None:
        report = await self.runtime.kernel.scan()
        self.refresh()
        notes = f" Notes: {'; '.join(report.notes)}" if report.notes else ""
        self.banner.info(f"Found {report.models} models from {len(set(report.providers))} providers.{notes}")

    # -- downloads -------------------------------------------------------------------------------------
    @property
    def downloads(self) -> Any:
        if self._downloads is None:
            from app.kernel.models.downloads import Downloads

            self._downloads = Downloads(self.runtime.kernel.paths.models_dir, self.runtime.kernel.events)
        return self._downloads

    def list_files(self) -> asyncio.Task[Any]:
        return self.run(self._list_files(), name="hf-list")

    async def _list_files(self) -> None:
        self.list_button.setEnabled(False)
        self.files.clear()
        self.download_button.setEnabled(False)
        try:
            self.remote_files = await self.downloads.list_repo(self.repo.text().strip())
        finally:
            self.list_button.setEnabled(True)
        ram, vram = self.machine_memory()
        for f in self.remote_files:
            spec = ModelSpec(
                id=f.filename, name=f.filename, provider="local", local=True, memory_bytes=f.size
            )
            self.files.addItem(f"{f.filename} — {human_bytes(f.size)} — {fit_badge(spec, ram, vram)[0]}")
        self.download_button.setEnabled(bool(self.remote_files))
        if not self.remote_files:
            self.banner.info("That repo has no .gguf files.")

    def download_selected(self) -> Any:
        i = self.files.currentIndex()
        if not (0 <= i < len(self.remote_files)):
            return None
        try:
            d = self.downloads.start(self.remote_files[i])
        except Exception as e:
            self.banner.error(readable(e))
            return None
        if d.id not in self.rows:
            row = DownloadRow(self, d)
            self.rows[d.id] = row
            self.download_list.addWidget(row)
        return d

    def _on_progress(self, event: Any) -> None:
        row = self.rows.get(event.id)
        if row is None:
            return
        row.update_from(event)
        if event.state == "done":
            self.run(self._scan(), name="scan-after-download")
        elif event.state == "failed":
            self.banner.error(f"{event.filename}: {event.error}")

    async def aclose(self) -> None:
        if self._downloads is not None:
            await self._downloads.aclose()
