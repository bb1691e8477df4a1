"""The Socket view: the model in the socket, model cards to drag in, the fallback chain.

Swapping: drag a card onto the socket, or focus a card and press Enter (or use its menu).
The chosen strategy (graceful by default) is passed to the kernel's socket when it has
one; the swap's progress and outcome show on the socket and in a status line.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.kernel.canonical import ModelSpec
from app.ui.tasks import readable
from app.ui.views.base import View
from app.ui.widgets.model_card import MODEL_MIME, ModelCard, context_label
from app.ui.widgets.socket_widget import SocketWidget

STRATEGIES = [
    ("Graceful — in-flight requests finish on the old model", "GRACEFUL"),
    ("Immediate — cancel in-flight requests", "IMMEDIATE"),
    ("Background — preload, switch when warm", "BACKGROUND"),
    ("Session-aware — open sessions stay until they end", "SESSION_AWARE"),
]


class FallbackList(QListWidget):
    """The fallback chain: reorder by dragging (or Alt+Up/Down), drop model cards in, Delete removes."""

    def __init__(self, view: SocketView) -> None:
        super().__init__(view)
        self.view = view
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setAcceptDrops(True)
        self.setAccessibleName("Fallback chain")
        self.setMaximumHeight(150)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasFormat(MODEL_MIME):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasFormat(MODEL_MIME):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        if event.mimeData().hasFormat(MODEL_MIME):
            event.acceptProposedAction()
            self.view.add_fallback(bytes(event.mimeData().data(MODEL_MIME).data()).decode())
            return
        super().dropEvent(event)
        self.view.fallbacks_edited()

    def keyPressEvent(self, event) -> None:
        row = self.currentRow()
        if event.key() == Qt.Key.Key_Delete and row >= 0:
            self.takeItem(row)
            self.view.fallbacks_edited()
            return
        if event.modifiers() & Qt.KeyboardModifier.AltModifier and event.key() in (
            Qt.Key.Key_Up,
            Qt.Key.Key_Down,
        ):
            to = row + (-1 if event.key() == Qt.Key.Key_Up else 1)
            if row >= 0 and 0 <= to < self.count():
                self.insertItem(to, self.takeItem(row))
                self.setCurrentRow(to)
                self.view.fallbacks_edited()
            return
        super().keyPressEvent(event)

    def ids(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]


class SocketView(View):
    title = "Socket"
    icon_name = "socket"
    subtitle = (
        "Drag a model into the socket to swap it — or select a card and press Enter. "
        "Apps keep working through the swap."
    )

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(runtime, parent)
        self.cards: dict[str, ModelCard] = {}
        self.latency: dict[str, float] = {}  # EWMA per model id
        self.loaded: set[str] = set()
        self.health: dict[str, tuple[bool, str]] = {}
        self.last_swap_ms: float | None = None
        self._swap_task: asyncio.Task[Any] | None = None

        # left: the socket, alias, strategy, status, fallbacks
        left = QVBoxLayout()
        alias_row = QHBoxLayout()
        alias_row.addWidget(QLabel("Socket:"))
        self.alias_box = QComboBox(self)
        self.alias_box.setAccessibleName("Socket alias")
        self.alias_box.addItem("default")
        self.alias_box.currentTextChanged.connect(lambda _t: self.refresh())
        alias_row.addWidget(self.alias_box, 1)
        new_alias = QPushButton("New socket…", self)
        new_alias.setToolTip("A socket for one kind of work (code, writing…): apps ask for it by name")
        new_alias.clicked.connect(self.ask_new_alias)
        alias_row.addWidget(new_alias)
        left.addLayout(alias_row)
        self.socket = SocketWidget("default", self)
        self.socket.modelDropped.connect(self.swap_to)
        left.addWidget(self.socket, 1)
        strat_row = QHBoxLayout()
        strat_row.addWidget(QLabel("Strategy:"))
        self.strategy = QComboBox(self)
        self.strategy.setAccessibleName("Swap strategy")
        for label, key in STRATEGIES:
            self.strategy.addItem(label, key)
        strat_row.addWidget(self.strategy, 1)
        left.addLayout(strat_row)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Swap status")
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        self.cancel_button = QPushButton("Cancel swap", self)
        self.cancel_button.setToolTip(
            "Stop a swap that is still loading its model; the old one keeps serving"
        )
        self.cancel_button.clicked.connect(self.cancel_swap)
        self.cancel_button.hide()
        status_row.addWidget(self.cancel_button)
        left.addLayout(status_row)
        left.addWidget(QLabel("<b>Fallback chain</b> — tried in order when the model fails"))
        self.fallbacks = FallbackList(self)
        left.addWidget(self.fallbacks)
        self.fallback_note = QLabel("", self)
        self.fallback_note.setObjectName("Muted")
        self.fallback_note.setWordWrap(True)
        left.addWidget(self.fallback_note)

        # right: the model cards
        right = QVBoxLayout()
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Filter models…")
        self.search.setAccessibleName("Filter models")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        right.addWidget(self.search)
        self.grid_host = QWidget(self)
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 6, 0)
        self.grid.setSpacing(8)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        right.addWidget(scroll, 1)
        self.empty = QLabel(
            "No models yet. Open <b>Marketplace</b> to add a provider or download a model, "
            "or start Ollama / LM Studio and they are found automatically.",
            self,
        )
        self.empty.setWordWrap(True)
        self.empty.setObjectName("Muted")
        right.addWidget(self.empty)
        plug = QPushButton("Plug selected model in", self)
        plug.clicked.connect(self._plug_focused)
        right.addWidget(plug)

        row = QHBoxLayout()
        row.addLayout(left, 2)
        row.addLayout(right, 3)
        self.body.addLayout(row, 1)

        runtime.bridge.modelsChanged.connect(self.refresh)
        runtime.bridge.requestFinished.connect(self._on_request)
        runtime.bridge.socketChanged.connect(self._on_socket_event)
        runtime.bridge.residencyChanged.connect(self._on_residency)
        runtime.currentModelChanged.connect(self._show_current)
        self.refresh()

    # -- data ----------------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        return self.alias_box.currentText() or "default"

    def activated(self) -> None:
        self.refresh()
        self.run(self._probe(), name="socket-probe")

    def refresh(self, *_: object) -> None:
        models = self.runtime.models()
        ids = [m.id for m in models]
        if ids != list(self.cards):
            self._rebuild(models)
        self._sync_aliases()
        self._show_current()
        self._show_fallbacks()

    def _rebuild(self, models: list[ModelSpec]) -> None:
        for card in self.cards.values():
            self.grid.removeWidget(card)
            card.hide()
            card.deleteLater()
        self.cards.clear()
        for i, spec in enumerate(sorted(models, key=lambda m: (not m.local, m.provider, m.name))):
            card = ModelCard(spec, self.grid_host)
            card.plugRequested.connect(self.swap_to)
            card.fallbackRequested.connect(self.add_fallback)
            self.grid.addWidget(card, i // 2, i % 2)
            self.cards[spec.id] = card
            self._paint_card(card)
        self.empty.setVisible(not models)
        self._filter(self.search.text())

    def _paint_card(self, card: ModelCard) -> None:
        mid = card.spec.id
        current = mid == self.runtime.current_model_id(self.alias)
        if card.spec.local:
            card.set_state("warm" if mid in self.loaded else "cold")
        else:
            card.set_state("cloud")
        if current:
            card.set_state("serving")
        card.set_selected(current)
        card.set_latency(self.latency.get(mid))
        h = self.health.get(card.spec.provider)
        card.set_health(None if h is None else h[0], "" if h is None else h[1])

    def _filter(self, text: str) -> None:
        needle = text.strip().lower()
        for mid, card in self.cards.items():
            card.setVisible(
                not needle or needle in mid.lower() or needle in (card.spec.display_name or "").lower()
            )

    def _sync_aliases(self) -> None:
        names = [s.config.alias for s in self.runtime.aliases()] or ["default"]
        current = [self.alias_box.itemText(i) for i in range(self.alias_box.count())]
        if names != current:
            keep = self.alias
            self.alias_box.blockSignals(True)
            self.alias_box.clear()
            self.alias_box.addItems(names)
            if keep in names:
                self.alias_box.setCurrentText(keep)
            self.alias_box.blockSignals(False)
        self.socket.alias = self.alias

    def _show_current(self, *_: object) -> None:
        mid = self.runtime.current_model_id(self.alias)
        spec = next((c.spec for c in self.cards.values() if c.spec.id == mid), None)
        if spec is None:
            self.socket.set_model(mid)
        else:
            where = "local" if spec.local else "cloud"
            self.socket.set_model(
                spec.display_name or spec.name,
                f"{spec.provider} · {where} · {context_label(spec.context_window)} ctx",
            )
        for card in self.cards.values():
            self._paint_card(card)

    def _show_fallbacks(self) -> None:
        config = self.runtime.alias_config(self.alias)
        self.fallbacks.setEnabled(config is not None)
        self.fallback_note.setText(
            "Drop cards here; drag to reorder (Alt+↑/↓), Delete removes."
            if config is not None
            else "Plug a model in first."
        )
        chain = list(config.fallbacks) if config is not None else []
        if chain != self.fallbacks.ids():
            self.fallbacks.clear()
            for mid in chain:
                item = QListWidgetItem(mid)
                item.setData(Qt.ItemDataRole.UserRole, mid)
                self.fallbacks.addItem(item)

    # -- swapping ----------------------------------------------------------------------------------
    def strategy_value(self) -> Any:
        from app.kernel.socket.manager import SwapStrategy

        return SwapStrategy[self.strategy.currentData()]

    def swap_to(self, model_id: str) -> asyncio.Task[Any]:
        self.socket.set_phase("swapping")  # feedback now, before the first await
        self._swap_task = self.run(self._swap(model_id), name="socket-swap")
        return self._swap_task

    async def _swap(self, model_id: str) -> None:
        card = self.cards.get(model_id)
        label = card.spec.display_name or card.spec.name if card else model_id
        strategy_name = self.strategy.currentText().split(" — ")[0].lower()
        self.banner.hide()
        self.socket.set_phase("swapping")
        self.status.setText(f"Swapping to {label} ({strategy_name})…")
        if card:
            card.set_state("loading" if card.spec.local else card.state)
        started = time.perf_counter()
        self.cancel_button.show()
        try:
            await self.runtime.swap(model_id, alias=self.alias, strategy=self.strategy_value())
        except asyncio.CancelledError:
            self.socket.set_phase("idle")
            self.status.setText(f"Swap to {label} cancelled; the socket keeps its model.")
            self._show_current()
            raise
        except Exception as e:
            self.socket.set_phase("failed")
            self.status.setText(f"Swap to {label} failed.")
            self.banner.error(f"Could not swap to {label}: {readable(e)}")
            self._show_current()
            return
        finally:
            self.cancel_button.hide()
        self.last_swap_ms = (time.perf_counter() - started) * 1000
        self.socket.set_phase("done")
        self.status.setText(f"Now serving {label} — swapped in {self.last_swap_ms:.0f} ms.")
        self._show_current()

    def cancel_swap(self) -> None:
        if self._swap_task is not None and not self._swap_task.done():
            self._swap_task.cancel()

    def ask_new_alias(self) -> QInputDialog:
        dialog = QInputDialog(self)
        dialog.setWindowTitle("New socket")
        dialog.setLabelText(
            "Name (letters, digits, - or _), e.g. code or writing.\n"
            "It starts with the model in the current socket; swap another in after."
        )
        dialog.textValueSelected.connect(self.create_alias)
        dialog.open()  # no nested event loop
        return dialog

    def create_alias(self, name: str) -> asyncio.Task[Any] | None:
        name = name.strip()
        model = self.runtime.current_model_id(self.alias)
        if not name or not model:
            self.banner.info("Plug a model into a socket first; a new socket starts with that model.")
            return None

        async def go() -> None:
            await self.runtime.swap(model, alias=name)
            self._sync_aliases()
            self.alias_box.setCurrentText(name)
            self.banner.ok(f'Socket {name!r} created with {model}. Apps use it with model="{name}".')

        return self.run(go(), name="socket-new")

    def _plug_focused(self) -> None:
        card = next((c for c in self.cards.values() if c.hasFocus()), None)
        if card is None:
            card = next((c for c in self.cards.values() if c.isVisible() and c.state != "serving"), None)
        if card is not None:
            self.swap_to(card.spec.id)

    # -- fallbacks -------------------------------------------------------------------------------
    def add_fallback(self, model_id: str) -> None:
        if not self.fallbacks.isEnabled():
            self.banner.info("Plug a model into the socket first; then add fallbacks.")
            return
        if model_id in self.fallbacks.ids():
            return
        item = QListWidgetItem(model_id)
        item.setData(Qt.ItemDataRole.UserRole, model_id)
        self.fallbacks.addItem(item)
        self.fallbacks_edited()

    def fallbacks_edited(self) -> None:
        ids = self.fallbacks.ids()
        try:
            self.runtime.set_fallbacks(self.alias, ids)
        except Exception as e:
            self.banner.error(f"Could not change the fallback chain: {readable(e)}")
            self._show_fallbacks()
            return
        self.status.setText(f"Fallback chain for {self.alias}: {' → '.join(ids) or 'none'}")

    # -- events ----------------------------------------------------------------------------------
    def _on_request(self, event) -> None:
        if event.outcome != "ok":
            return
        prev = self.latency.get(event.model)
        self.latency[event.model] = event.latency_ms if prev is None else 0.7 * prev + 0.3 * event.latency_ms
        card = self.cards.get(event.model)
        if card is not None:
            card.set_latency(self.latency[event.model])

    def _on_socket_event(self, event) -> None:
        name = type(event).__name__
        if name == "SwapStarted":
            self.socket.set_phase("swapping")
        elif name in ("SwapFinished", "ModelSwapped"):
            ours = self._swap_task is not None and not self._swap_task.done()
            if not ours and getattr(event, "alias", "default") == self.alias:
                # A swap from elsewhere (tray, CLI, API, an automatic trigger): say so.
                self.socket.set_phase("done")
                trigger = getattr(event, "trigger", "manual")
                self.status.setText(
                    f"Now serving {getattr(event, 'to_model', '')} — swapped "
                    f"{'from outside this view' if trigger == 'manual' else 'automatically (' + trigger + ')'}."
                )
            self._sync_aliases()
            self._show_current()
        elif name == "SwapFailed":
            self.socket.set_phase("failed")
            self.banner.error(f"Swap failed: {getattr(event, 'error', '') or getattr(event, 'detail', '')}")

    def _on_residency(self, event) -> None:
        model = getattr(event, "model", None) or getattr(event, "model_id", None)
        name = type(event).__name__
        card = self.cards.get(model) if model else None
        if name == "ModelLoaded" and model:
            self.loaded.add(model)
        elif name in ("ModelEvicted", "ModelUnloaded") and model:
            self.loaded.discard(model)
        if name == "ModelLoading" and self.cancel_button.isVisible():
            progress = float(getattr(event, "progress", 0.0) or 0.0)
            self.status.setText(
                f"Loading {model} into memory… {progress:.0%}" if progress else f"Loading {model}…"
            )
        if card is not None:
            if name == "ModelLoading":
                card.set_state("loading")
            else:
                self._paint_card(card)

    async def _probe(self) -> None:
        """Which local models are resident, which providers answer: for the cards' state and health."""
        kernel = self.runtime.kernel
        self.loaded = {m.model for m in await self.runtime.sampler.model_memory()}

        async def check(pid: str) -> None:
            try:
                async with asyncio.timeout(5):
                    h = await kernel.provider_health(pid)
                self.health[pid] = (h.ok, h.detail)
            except TimeoutError:
                self.health[pid] = (False, "no answer within 5 s")

        await asyncio.gather(*(check(p) for p in {c.spec.provider for c in self.cards.values()}))
        for card in self.cards.values():
            self._paint_card(card)
