"""The Socket view: the model in the socket, model cards to drag in, the fallback chain.

Swapping: drag a card onto the socket, or focus a card and press Enter (or use its menu).
The chosen strategy (graceful by default) is passed to the kernel's socket when it has
one; the swap's progress and outcome show on the socket and in a status line.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.kernel.canonical import ModelSpec
from app.ui.bridge import MANUAL_TRIGGERS, AutoSwap
from app.ui.tasks import readable
from app.ui.views.base import View
from app.ui.widgets.model_card import MODEL_MIME, ModelCard, context_label
from app.ui.widgets.socket_widget import SocketWidget
from app.ui.widgets.text import auto_swap_sentence, in_words, model_label, model_label_for

STRATEGIES = [
    ("Graceful — in-flight requests finish on the old model", "GRACEFUL"),
    ("Immediate — cancel in-flight requests", "IMMEDIATE"),
    ("Background — preload, switch when warm", "BACKGROUND"),
    ("Session-aware — open sessions stay until they end", "SESSION_AWARE"),
]
CARD_MIN_WIDTH = 230  # below twice this (plus spacing) the cards stand in one column
MAX_COLUMNS = 3
OWN_SWAP_GRACE_S = 5.0  # how long after our own swap its SwapFinished still counts as ours
COOLING_STATES = ("open", "half_open", "cooling")


class CardGrid(QScrollArea):
    """The model cards in as many columns as fit: never a horizontal scrollbar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = QWidget(self)
        self.grid = QGridLayout(self.host)
        self.grid.setContentsMargins(0, 0, 6, 0)
        self.grid.setSpacing(8)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.setWidgetResizable(True)
        self.setWidget(self.host)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.cards: list[ModelCard] = []
        self.columns = 1
        self.viewport().installEventFilter(self)

    def set_cards(self, cards: list[ModelCard]) -> None:
        self.cards = cards
        self.relayout(force=True)

    def columns_for(self, width: int) -> int:
        spacing = self.grid.spacing()
        return max(1, min(MAX_COLUMNS, (width - 6 + spacing) // (CARD_MIN_WIDTH + spacing)))

    def relayout(self, force: bool = False) -> None:
        columns = self.columns_for(self.viewport().width())
        if columns == self.columns and not force:
            return
        self.columns = columns
        for card in self.cards:
            self.grid.removeWidget(card)
        shown = [c for c in self.cards if not c.isHidden()]
        for i, card in enumerate(shown):
            self.grid.addWidget(card, i // columns, i % columns)
        for c in range(MAX_COLUMNS):
            self.grid.setColumnStretch(c, 1 if c < columns else 0)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.viewport() and event.type() == QEvent.Type.Resize:
            self.relayout()
        return False


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
        self.setMinimumHeight(60)

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
        self.health: dict[str, tuple[bool, str]] = {}  # provider id → (answers, detail)
        self.deployment_health: dict[str, tuple[bool, str]] = {}  # model id → (healthy, why not)
        self.last_swap_ms: float | None = None
        self._swap_task: asyncio.Task[Any] | None = None
        # Swaps this view asked for: (alias, model id, until when their SwapFinished counts as ours).
        # Their events arrive after the swap's task has ended, so "is the task running" cannot tell.
        self._own_swaps: list[list[Any]] = []

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
        # The long labels must not decide the column's width (the minimum window is 860 wide).
        self.strategy.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.strategy.setMinimumContentsLength(12)
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
        chain_title = QLabel("<b>Fallback chain</b> — tried in order if the model fails", self)
        chain_title.setWordWrap(True)
        left.addWidget(chain_title)
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
        self.card_grid = CardGrid(self)
        self.grid_host, self.grid = self.card_grid.host, self.card_grid.grid
        right.addWidget(self.card_grid, 1)
        self.empty = QFrame(self)
        self.empty.setObjectName("EmptyState")
        empty_layout = QVBoxLayout(self.empty)
        empty_layout.setContentsMargins(18, 16, 18, 16)
        empty_title = QLabel("No models yet", self.empty)
        empty_title.setObjectName("EmptyTitle")
        self.empty_text = QLabel(
            "Add a provider (OpenAI, Anthropic, any OpenAI-compatible server…) or download a "
            "GGUF model in the Marketplace. Ollama and LM Studio running on this machine are "
            "found automatically.",
            self.empty,
        )
        self.empty_text.setWordWrap(True)
        self.empty_button = QPushButton("Open Marketplace", self.empty)
        self.empty_button.setDefault(True)
        self.empty_button.clicked.connect(lambda: self.runtime.bridge.openViewRequested.emit("Marketplace"))
        empty_layout.addWidget(empty_title)
        empty_layout.addWidget(self.empty_text)
        empty_layout.addWidget(self.empty_button, 0, Qt.AlignmentFlag.AlignLeft)
        empty_layout.addStretch(1)
        self.empty.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.empty.hide()
        right.addWidget(self.empty, 1)
        self.plug_button = QPushButton("Plug selected model in", self)
        self.plug_button.clicked.connect(self._plug_focused)
        right.addWidget(self.plug_button)

        row = QHBoxLayout()
        row.addLayout(left, 2)
        row.addLayout(right, 3)
        self.body.addLayout(row, 1)

        runtime.bridge.modelsChanged.connect(self.refresh)
        runtime.bridge.requestFinished.connect(self._on_request)
        runtime.bridge.socketChanged.connect(self._on_socket_event)
        runtime.bridge.autoSwapped.connect(self._on_auto_swap)
        runtime.bridge.healthChanged.connect(self._on_health)
        runtime.bridge.residencyChanged.connect(self._on_residency)
        runtime.currentModelChanged.connect(self._show_current)
        self.alias_box.currentTextChanged.connect(lambda _t: self._show_auto_status())
        self.refresh()
        self._show_auto_status()

    # -- data ----------------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        return self.alias_box.currentText() or "default"

    def activated(self) -> None:
        self.refresh()
        self._show_auto_status()
        self.run(self._probe(), name="socket-probe")

    def refresh(self, *_: object) -> None:
        models = self.runtime.models()
        ids = sorted(m.id for m in models)
        if ids != sorted(self.cards):
            self._rebuild(models)
        self._show_empty(not models)
        self._sync_aliases()
        self._read_deployments()
        self._show_current()
        self._show_fallbacks()

    def label(self, model_id: str | None) -> str:
        """A model named with its provider ("acc-model · acc")."""
        return model_label_for(model_id, self.runtime.all_models())

    def _rebuild(self, models: list[ModelSpec]) -> None:
        for card in self.cards.values():
            self.grid.removeWidget(card)
            card.hide()
            card.deleteLater()
        self.cards.clear()
        for spec in sorted(models, key=lambda m: (not m.local, m.provider, m.name)):
            card = ModelCard(spec, self.grid_host)
            card.plugRequested.connect(self.swap_to)
            card.fallbackRequested.connect(self.add_fallback)
            self.cards[spec.id] = card
            self._paint_card(card)
        self.card_grid.set_cards(list(self.cards.values()))
        self._filter(self.search.text())

    def _show_empty(self, empty: bool) -> None:
        """First run: a plain "No models yet" with the way to add one, instead of an empty grid."""
        self.empty.setVisible(empty)
        self.card_grid.setVisible(not empty)
        self.search.setVisible(not empty)

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
        card.set_health(*self._health_of(card.spec))

    def _health_of(self, spec: ModelSpec) -> tuple[bool | str | None, str]:
        """The card's dot: unreachable (the provider does not answer) over cooling down (this model
        failed lately and is skipped for now) over healthy; None while nothing is known."""
        provider = self.health.get(spec.provider)
        deployment = self.deployment_health.get(spec.id)
        if provider is not None and not provider[0]:
            return False, provider[1]
        if deployment is not None and not deployment[0]:
            return "cooling", deployment[1]
        if provider is not None:
            return True, provider[1]
        if deployment is not None:
            return True, deployment[1]
        return None, ""

    def _filter(self, text: str) -> None:
        needle = text.strip().lower()
        for mid, card in self.cards.items():
            card.setVisible(
                not needle
                or needle in mid.lower()
                or needle in (card.spec.display_name or "").lower()
                or needle in card.spec.provider.lower()
            )
        self.card_grid.relayout(force=True)
        self._update_plug_button()

    def _update_plug_button(self) -> None:
        pluggable = [c for c in self.cards.values() if not c.isHidden() and c.state != "serving"]
        self.plug_button.setEnabled(bool(pluggable))
        self.plug_button.setToolTip(
            "Plug the focused card (or the first one shown) into the socket"
            if pluggable
            else ("Add a model first (Marketplace)" if not self.cards else "Every model shown is in the socket")
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
            provider, sep, name = mid.partition("/")
            self.socket.set_model(name if sep else mid, "", provider if sep else "")
        else:
            where = "local" if spec.local else "cloud"
            self.socket.set_model(
                spec.display_name or spec.name,
                f"{spec.provider} · {where} · {context_label(spec.context_window)} ctx",
                spec.provider,
            )
        for card in self.cards.values():
            self._paint_card(card)
        self._update_plug_button()

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
                self.fallbacks.addItem(self._fallback_item(mid))

    def _fallback_item(self, model_id: str) -> QListWidgetItem:
        item = QListWidgetItem(self.label(model_id))
        item.setData(Qt.ItemDataRole.UserRole, model_id)
        item.setToolTip(model_id)
        return item

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
        label = model_label(card.spec) if card else self.label(model_id)
        strategy_name = self.strategy.currentText().split(" — ")[0].lower()
        self.banner.hide()
        self.socket.set_phase("swapping")
        self.status.setText(f"Swapping to {label} ({strategy_name})…")
        if card:
            card.set_state("loading" if card.spec.local else card.state)
        started = time.perf_counter()
        self.cancel_button.show()
        own = self._expect_own_swap(self.alias, model_id)
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
            own[2] = time.monotonic() + OWN_SWAP_GRACE_S  # its events are queued by now
        self.last_swap_ms = (time.perf_counter() - started) * 1000
        self.socket.set_phase("done")
        self.status.setText(f"Now serving {label} — swapped in {self.last_swap_ms:.0f} ms.")
        self._show_current()

    def _expect_own_swap(self, alias: str, model_id: str) -> list[Any]:
        entry: list[Any] = [alias, model_id, math.inf]
        self._own_swaps.append(entry)
        return entry

    def _is_own_swap(self, alias: str, model_id: str, *, take: bool = False) -> bool:
        """Was this swap (its event just arrived) asked for by this view? `take`: its last event."""
        now = time.monotonic()
        self._own_swaps = [e for e in self._own_swaps if e[2] > now]
        for i, (a, m, _until) in enumerate(self._own_swaps):
            if a == alias and m == model_id:
                if take:
                    del self._own_swaps[i]
                return True
        return False

    def _take_own_swap(self, alias: str, model_id: str) -> bool:
        return self._is_own_swap(alias, model_id, take=True)

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
            own = self._expect_own_swap(name, model)
            try:
                await self.runtime.swap(model, alias=name)
            finally:
                own[2] = time.monotonic() + OWN_SWAP_GRACE_S
            self._sync_aliases()
            self.alias_box.setCurrentText(name)
            self.banner.ok(f'Socket {name!r} created with {model}. Apps use it with model="{name}".')

        return self.run(go(), name="socket-new")

    def _plug_focused(self) -> None:
        card = next((c for c in self.cards.values() if c.hasFocus()), None)
        if card is None:
            card = next((c for c in self.cards.values() if not c.isHidden() and c.state != "serving"), None)
        if card is not None:
            self.swap_to(card.spec.id)

    # -- fallbacks -------------------------------------------------------------------------------
    def add_fallback(self, model_id: str) -> None:
        if not self.fallbacks.isEnabled():
            self.banner.info("Plug a model into the socket first; then add fallbacks.")
            return
        if model_id in self.fallbacks.ids():
            return
        self.fallbacks.addItem(self._fallback_item(model_id))
        self.fallbacks_edited()

    def fallbacks_edited(self) -> None:
        ids = self.fallbacks.ids()
        try:
            self.runtime.set_fallbacks(self.alias, ids)
        except Exception as e:
            self.banner.error(f"Could not change the fallback chain: {readable(e)}")
            self._show_fallbacks()
            return
        chain = " → ".join(self.label(m) for m in ids) or "none"
        self.status.setText(f"Fallback chain for {self.alias}: {chain}")

    # -- events ----------------------------------------------------------------------------------
    def _on_request(self, event) -> None:
        if event.outcome != "ok":
            return
        prev = self.latency.get(event.model)
        self.latency[event.model] = event.latency_ms if prev is None else 0.7 * prev + 0.3 * event.latency_ms
        # It answered: its provider is reachable, whatever an earlier probe found.
        provider = self.health.get(event.provider)
        if provider is not None and not provider[0]:
            self.health[event.provider] = (True, "answered a request")
            for c in self.cards.values():
                if c.spec.provider == event.provider:
                    self._paint_card(c)
        card = self.cards.get(event.model)
        if card is not None:
            card.set_latency(self.latency[event.model])

    def _on_socket_event(self, event) -> None:
        name = type(event).__name__
        alias = getattr(event, "alias", "default")
        if name == "SwapStarted":
            # Ours was shown as swapping from the start (and may be over by now): only others.
            if alias == self.alias and not self._is_own_swap(alias, getattr(event, "to_model", "")):
                self.socket.set_phase("swapping")
            return
        if name in ("SwapFinished", "ModelSwapped"):
            to_model = getattr(event, "to_model", "")
            ours = self._take_own_swap(alias, to_model)
            trigger = getattr(event, "trigger", "manual")
            if not ours and alias == self.alias and trigger in MANUAL_TRIGGERS:
                # A swap from elsewhere (tray, CLI, API): say so. Automatic ones: _on_auto_swap.
                self.socket.set_phase("done")
                self.status.setText(
                    f"Now serving {self.label(to_model)} — swapped from outside this view "
                    "(tray menu, command line or the API)."
                )
        elif name == "SwapFailed":
            ours = self._take_own_swap(alias, getattr(event, "to_model", ""))
            if not ours and alias == self.alias:
                self.socket.set_phase("failed")
                self.banner.error(
                    f"Swap to {self.label(getattr(event, 'to_model', ''))} failed: "
                    f"{in_words(getattr(event, 'error', '') or getattr(event, 'detail', ''))}"
                )
        # The chip, the cards and the fallback chain (an automatic swap reorders it) are re-read.
        self.refresh()

    def _on_auto_swap(self, notice: AutoSwap) -> None:
        self.refresh()
        if notice.alias == self.alias:
            self.socket.set_phase("done")
            self.status.setText(self.auto_swap_text(notice))

    def auto_swap_text(self, notice: AutoSwap) -> str:
        return auto_swap_sentence(notice, self.label)

    def auto_swap_now(self, alias: str | None = None) -> AutoSwap | None:
        """The automatic swap that put the current model into the socket, if one did."""
        alias = alias or self.alias
        current = self.runtime.current_model_id(alias)
        notice = self._kernel_auto_swap(alias) or self.runtime.bridge.auto_swaps.get(alias)
        return notice if notice is not None and notice.to_model == current else None

    def _kernel_auto_swap(self, alias: str) -> AutoSwap | None:
        """HOOK: the kernel's own record of an alias's automatic swap (`auto_swapped` in
        `Kernel.socket_state()`), read leniently; None while the kernel keeps none."""
        try:
            state = self.runtime.kernel.socket_state() if self.runtime.started else {}
        except Exception:
            return None
        entry = next((a for a in state.get("aliases", []) if a.get("alias") == alias), None)
        auto = entry.get("auto_swapped") if entry else None
        if not isinstance(auto, dict):
            return None
        at = auto.get("at") or auto.get("ts") or 0
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at).timestamp()
            except ValueError:
                at = 0
        return AutoSwap(
            alias=alias,
            from_model=auto.get("from_model") or auto.get("from") or auto.get("previous"),
            to_model=auto.get("to_model") or auto.get("to") or auto.get("current") or entry.get("model", ""),
            trigger=str(auto.get("trigger") or "automatic"),
            reason=str(auto.get("reason") or auto.get("because") or ""),
            detail=str(auto.get("detail") or ""),
            ts=float(at or 0),
        )

    def _show_auto_status(self) -> None:
        if self._swap_task is not None and not self._swap_task.done():
            return
        notice = self.auto_swap_now()
        if notice is not None:
            self.status.setText(self.auto_swap_text(notice))

    def _on_health(self, event) -> None:
        name = type(event).__name__
        detail = in_words(getattr(event, "detail", ""))
        if name == "HealthChanged":
            self.deployment_health[event.model] = (bool(event.ok), detail)
            card = self.cards.get(event.model)
            cards = [card] if card is not None else []
        elif name == "ProviderHealthChanged":
            self.health[event.provider] = (bool(event.ok), detail)
            cards = [c for c in self.cards.values() if c.spec.provider == event.provider]
        else:
            return
        for c in cards:
            self._paint_card(c)

    def _read_deployments(self) -> None:
        """Which models are cooling down after errors (the router's circuit breakers)."""
        if not self.runtime.started:
            return
        try:
            deployments = self.runtime.kernel.socket_state().get("deployments", [])
        except Exception:
            return
        for d in deployments:
            state = str(d.get("health") or d.get("state") or "")
            model = d.get("model")
            if not model:
                continue
            if state in COOLING_STATES:
                again = d.get("open_for_s") or 0
                why = in_words(d.get("last_error") or "") or "it failed several times in a row"
                when = f"; tried again in {again:.0f} s" if again else "; being tried again"
                self.deployment_health[model] = (False, f"cooling down: {why}{when}")
            elif d.get("served") or model in self.deployment_health:
                self.deployment_health[model] = (True, "")

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
