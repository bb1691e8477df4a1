"""The assistant popup: a frameless, centred, Spotlight-like box. Type, Enter, the answer streams
in as Markdown; Esc closes (and stops the answer); the model in use is shown and switchable.

It asks through the local gateway over HTTP like any other app (so app tokens and the
Personal System Prompt apply to it too), streaming with an httpx client on the qasync loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.kernel.errors import ByenatosError
from app.ui.runtime import DesktopRuntime
from app.ui.tasks import spawn
from app.ui.widgets.text import in_words, model_label, model_label_for, spec_for_name

log = logging.getLogger(__name__)

APP_NAME = "ByenatOS Assistant"
TOKEN_SECRET = "desktop:assistant-token"
RENDER_EVERY = 0.03  # seconds: re-render Markdown at most ~30 times a second while streaming


class PopupError(ByenatosError):
    """A readable reason the popup could not answer."""


class AssistantPopup(QWidget):
    answerFinished = Signal(str)  # the whole answer, once streamed
    failed = Signal(str)

    def __init__(self, runtime: DesktopRuntime, parent: QWidget | None = None) -> None:
        super().__init__(
            parent,
            Qt.WindowType.Tool | Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint,
        )
        self.runtime = runtime
        self.setWindowTitle("ByenatOS Assistant")
        self.setAccessibleName("ByenatOS Assistant")
        self.resize(680, 120)
        frame = QFrame(self)
        frame.setObjectName("Popup")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(frame)
        layout = QVBoxLayout(frame)
        layout.setContentsMargins(14, 10, 14, 10)

        self.input = QLineEdit(frame)
        self.input.setObjectName("PopupInput")
        self.input.setPlaceholderText("Ask anything…")
        self.input.setAccessibleName("Question")
        self.input.returnPressed.connect(self.ask)
        layout.addWidget(self.input)

        self.answer = QTextBrowser(frame)
        self.answer.setOpenExternalLinks(True)
        self.answer.setAccessibleName("Answer")
        self.answer.setMinimumHeight(220)
        self.answer.hide()
        layout.addWidget(self.answer, 1)

        # With no model at all: say so, and offer the way to add one (not CLI commands).
        self.no_model = QFrame(frame)
        self.no_model.setObjectName("EmptyState")
        nm = QHBoxLayout(self.no_model)
        self.no_model_text = QLabel(
            "ByenatOS has no model yet. Add a provider or download a model to ask anything.", self.no_model
        )
        self.no_model_text.setWordWrap(True)
        self.add_model_button = QPushButton("Add a model…", self.no_model)
        self.add_model_button.clicked.connect(self.add_model)
        nm.addWidget(self.no_model_text, 1)
        nm.addWidget(self.add_model_button)
        self.no_model.hide()
        layout.addWidget(self.no_model)

        bar = QHBoxLayout()
        self.model = QComboBox(frame)
        self.model.setAccessibleName("Model")
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model.activated.connect(self._model_chosen)
        self.status = QLabel("Enter to ask · Esc to close", frame)
        self.status.setObjectName("Muted")
        self.copy_button = QPushButton("Copy answer", frame)
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_answer)
        bar.addWidget(self.model)
        bar.addWidget(self.status, 1)
        bar.addWidget(self.copy_button)
        layout.addLayout(bar)
        QShortcut(QKeySequence("Ctrl+Shift+C"), self, activated=self.copy_answer)

        self.text = ""
        self._answered_by = ""
        self._task: asyncio.Task[Any] | None = None
        self._client: Any = None
        self._last_render = 0.0
        # The picker names the socket's model: it follows swaps (tray, window, automatic) and
        # models coming and going, also while the popup is open.
        runtime.bridge.socketChanged.connect(self.fill_models)
        runtime.bridge.modelsChanged.connect(self.fill_models)
        runtime.currentModelChanged.connect(self.fill_models)
        runtime.ready.connect(self.fill_models)

    # -- showing --------------------------------------------------------------------------------
    def open(self) -> None:
        """Show centred on the screen under the mouse, focused and ready to type."""
        self.fill_models()
        screen = QGuiApplication.screenAt(self.cursor().pos()) or QGuiApplication.primaryScreen()
        if screen is not None:
            geo = screen.availableGeometry()
            self.move(geo.center().x() - self.width() // 2, geo.top() + geo.height() // 4)
        self.show()
        self.raise_()
        self.activateWindow()
        self.input.setFocus()
        self.input.selectAll()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close_popup()
            return
        super().keyPressEvent(event)

    def close_popup(self) -> None:
        self.stop()
        self.hide()

    def fill_models(self, *_: object) -> None:
        choice = self.runtime.prefs.popup_model
        models = self.runtime.models()
        current = self.runtime.current_model_id()
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(f"default ({model_label_for(current, models) or 'no model'})", "default")
        self.model.setItemData(0, f"The model in the default socket: {current or 'none yet'}",
                               Qt.ItemDataRole.ToolTipRole)
        for spec in sorted(models, key=lambda m: (not m.local, m.id)):
            self.model.addItem(model_label(spec), spec.id)
            self.model.setItemData(self.model.count() - 1, spec.id, Qt.ItemDataRole.ToolTipRole)
        i = self.model.findData(choice)
        self.model.setCurrentIndex(max(i, 0))
        self.model.blockSignals(False)
        self._show_no_model(not models and self.runtime.started)

    def _show_no_model(self, none: bool) -> None:
        self.no_model.setVisible(none)
        self.model.setEnabled(not none)
        self.input.setPlaceholderText("Add a model first…" if none else "Ask anything…")
        if none:
            self.answer.hide()

    def add_model(self) -> None:
        """Show the window's Marketplace (providers, downloads) and get out of its way."""
        self.close_popup()
        self.runtime.bridge.openViewRequested.emit("Marketplace")

    def _model_chosen(self, _index: int) -> None:
        self.runtime.prefs.popup_model = self.model.currentData() or "default"
        self.runtime.save_prefs()

    # -- asking ---------------------------------------------------------------------------------
    def ask(self) -> asyncio.Task[Any] | None:
        question = self.input.text().strip()
        if not question:
            return None
        if self.runtime.started and not self.runtime.models():
            self._show_no_model(True)
            self.status.setText("No model yet")
            return None
        self.stop()
        self.text = ""
        self.answer.clear()
        self.answer.show()
        self.resize(self.width(), 420)
        self.copy_button.setEnabled(False)
        self.status.setText("Thinking…")
        self._task = spawn(self._ask(question), on_error=self._failed, name="assistant")
        return self._task

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _ask(self, question: str) -> None:
        url = self.runtime.gateway_url
        if url is None:
            raise PopupError(f"the local gateway is not running ({self.runtime.gateway_error or 'stopped'})")
        model = self.model.currentData() or "default"
        body = {
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": question}],
            "stream_options": {"include_usage": True},
        }
        client = self._http()
        started = time.perf_counter()
        self._answered_by = ""
        async with client.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=self._auth_headers()
        ) as r:
            if r.status_code >= 400:
                raw = await r.aread()
                raise PopupError(_error_text(raw, r.status_code))
            # aclosing: leaving the loop early closes the byte stream now, on this loop, not in GC.
            lines = contextlib.aclosing(r.aiter_lines())
            async with lines as stream:
                async for line in stream:
                    if not self._take(line):
                        break
        self._render(force=True)
        self.copy_button.setEnabled(bool(self.text))
        self.status.setText(f"{self.answered_by_label(model)} · {time.perf_counter() - started:.1f} s")
        self.answerFinished.emit(self.text)

    def _take(self, line: str) -> bool:
        """One server-sent-event line; False at the end of the stream."""
        if not line.startswith("data:"):
            return True
        data = line[5:].strip()
        if data == "[DONE]":
            return False
        chunk = json.loads(data)
        if "error" in chunk:
            raise PopupError(_error_text(data.encode(), 502))
        self._answered_by = chunk.get("model") or self._answered_by
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                self.text += piece
                self._render()
        return True

    def answered_by_label(self, asked: str) -> str:
        """Who answered, with the provider: the answer's `model` field names it as the upstream
        does (a bare name), so it is matched against what was asked for."""
        models = self.runtime.all_models()
        wanted = self.runtime.current_model_id() if asked == "default" else asked
        if self._answered_by:
            spec = spec_for_name(self._answered_by, models, prefer=wanted)
            if spec is not None:
                return model_label(spec)
            return self._answered_by
        return model_label_for(wanted, models) or asked

    def _render(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last_render >= RENDER_EVERY:
            self._last_render = now
            self.answer.setMarkdown(self.text)
            self.answer.verticalScrollBar().setValue(self.answer.verticalScrollBar().maximum())

    def _failed(self, text: str) -> None:
        self.status.setText("Could not answer")
        if self.runtime.started and not self.runtime.models():
            self._show_no_model(True)
        self.answer.show()
        # `byenatos …` in a kernel message reads as code, not as raw backticks.
        words = html.escape(f"Sorry — {in_words(text)}")
        self.answer.setHtml(re.sub(r"`([^`]+)`", r"<code>\1</code>", words))
        self.failed.emit(text)

    def copy_answer(self) -> None:
        if self.text:
            QGuiApplication.clipboard().setText(self.text)
            self.status.setText("Answer copied")

    # -- HTTP and the app token -------------------------------------------------------------------
    def _http(self) -> Any:
        if self._client is None:
            import httpx  # lazy: only when the popup first asks

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0))
        return self._client

    def _auth_headers(self) -> dict[str, str]:
        token = self.app_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def app_token(self) -> str | None:
        """The popup's own app token (scope `chat`), registered once and kept in the keyring."""
        apps = getattr(self.runtime.kernel, "apps", None)
        if apps is None or not hasattr(apps, "register"):
            return None
        secrets = self.runtime.kernel.secrets
        token = secrets.get(TOKEN_SECRET)
        if token and apps.authenticate(token) is not None:
            return token
        _info, token = apps.register(APP_NAME, ["chat"], replace=True)
        secrets.set(TOKEN_SECRET, token)
        return token

    async def aclose(self) -> None:
        self.stop()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _error_text(raw: bytes, status: int) -> str:
    try:
        err = json.loads(raw).get("error") or {}
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")[:300]
    return in_words(message) or f"the gateway answered {status}"
