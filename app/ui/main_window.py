"""The main window: a sidebar of views and the view itself; closing hides it to the tray."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.about import AboutDialog
from app.ui.runtime import DesktopRuntime
from app.ui.theme import icon, tinted_icon
from app.ui.views import View, view_classes
from app.ui.widgets.hotkey_guard import HotkeyGuard
from app.ui.widgets.text import model_label_for


class MainWindow(QMainWindow):
    closedToTray = Signal()
    quitRequested = Signal()
    firstShown = Signal()
    viewCreated = Signal(object)  # a View, the first time it is opened

    def __init__(self, runtime: DesktopRuntime, *, tray_available: bool = True) -> None:
        super().__init__()
        self.runtime = runtime
        self.tray_available = tray_available
        self.setWindowTitle("ByenatOS")
        self.setWindowIcon(icon("byenatos"))
        self.resize(1180, 780)
        self.setMinimumSize(QSize(860, 560))

        self.sidebar = QListWidget(self)
        self.sidebar.setObjectName("Sidebar")
        self.sidebar.setFixedWidth(190)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setAccessibleName("Views")
        self.stack = QStackedWidget(self)
        # Views are built when first opened: a window that shows fast and costs only what is used.
        self.classes: dict[str, type[View]] = {cls.title: cls for cls in view_classes()}
        self.views: dict[str, View] = {}
        self._pages: dict[str, QWidget] = {}
        color = self.palette().color(QPalette.ColorRole.WindowText).name()
        for i, cls in enumerate(self.classes.values()):
            page = QWidget(self.stack)
            page.setLayout(QVBoxLayout())
            page.layout().setContentsMargins(0, 0, 0, 0)
            self._pages[cls.title] = page
            self.stack.addWidget(page)
            item = QListWidgetItem(tinted_icon(cls.icon_name, color), cls.title)
            item.setToolTip(f"{cls.title} (Ctrl+{i + 1})")
            self.sidebar.addItem(item)
            QShortcut(
                QKeySequence(f"Ctrl+{i + 1}"), self, activated=lambda i=i: self.sidebar.setCurrentRow(i)
            )
        self.sidebar.currentRowChanged.connect(self._switch)
        central = QWidget(self)
        row = QHBoxLayout(central)
        row.setContentsMargins(8, 8, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        QShortcut(QKeySequence.StandardKey.Quit, self, activated=self.quitRequested.emit)

        self.gateway_label = QLabel("", self)
        self.model_label = QLabel("", self)
        self.statusBar().addWidget(self.gateway_label, 1)
        self.statusBar().addPermanentWidget(self.model_label)
        self.about_button = QToolButton(self)
        self.about_button.setText("About")
        self.about_button.setToolTip("About ByenatOS: version, gateway, data folder (F1)")
        self.about_button.setAutoRaise(True)
        self.about_button.clicked.connect(self.show_about)
        self.statusBar().addPermanentWidget(self.about_button)
        QShortcut(QKeySequence(Qt.Key.Key_F1), self, activated=self.show_about)
        self.about: AboutDialog | None = None  # built the first time it is asked for
        # The assistant's global hotkey also reaches the focused widget: it must not act there.
        self.hotkey_guard = HotkeyGuard(self._global_hotkey, self)
        # Bound methods, not lambdas: Qt drops these connections when the window is destroyed.
        runtime.gatewayChanged.connect(self.update_status)
        runtime.currentModelChanged.connect(self.update_status)
        runtime.bridge.socketChanged.connect(self.update_status)
        runtime.error.connect(self.show_error)
        runtime.bridge.modelsChanged.connect(self.update_status)
        runtime.ready.connect(self._refresh_view)
        runtime.bridge.openViewRequested.connect(self.open_view)
        self._shown_once = False
        self.sidebar.setCurrentRow(0)
        self.update_status()

    def _global_hotkey(self) -> str:
        prefs = self.runtime.prefs
        return prefs.hotkey if prefs.hotkey_enabled else ""

    @property
    def titles(self) -> list[str]:
        return list(self.classes)

    def view(self, title: str) -> View:
        """The view, built now if it was never opened."""
        view = self.views.get(title)
        if view is None:
            page = self._pages[title]
            view = self.classes[title](self.runtime, page)
            page.layout().addWidget(view)
            self.views[title] = view
            self.viewCreated.emit(view)
        return view

    def show_view(self, title: str) -> None:
        self.sidebar.setCurrentRow(self.titles.index(title))

    def open_view(self, title: str) -> None:
        """Bring the window up on a view (the popup's and the Socket view's "Add a model…")."""
        if title in self.classes:
            self.show_view(title)
        self.bring_to_front()

    def current_view(self) -> View:
        return self.view(self.titles[max(0, self.sidebar.currentRow())])

    def _switch(self, row: int) -> None:
        view = self.view(self.titles[row])
        self.stack.setCurrentIndex(row)
        if self.runtime.started:  # nothing to read before the kernel runs
            view.activated()

    def _refresh_view(self) -> None:
        if self.runtime.started:
            self.current_view().activated()

    def show_about(self) -> AboutDialog:
        """The About box, non-modal (a modal exec() would nest a Qt loop inside the asyncio one)."""
        if self.about is None:
            self.about = AboutDialog(self.runtime, self)
        self.about.refresh()
        self.about.show()
        self.about.raise_()
        self.about.activateWindow()
        return self.about

    def show_error(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)

    def update_status(self, *_: object) -> None:
        rt = self.runtime
        if rt.gateway_url:
            text = f"● Gateway on {rt.gateway_url}/v1"
        elif rt.gateway_state.value == "failed":
            text = f"✗ Gateway stopped: {rt.gateway_error}"
        else:
            text = f"Gateway {rt.gateway_state.value}…"
        if not self.tray_available:
            text += "   ·   No system tray here: closing this window quits ByenatOS"
        self.gateway_label.setText(text)
        model = rt.current_model_id()
        self.model_label.setText(
            f"Model: {model_label_for(model, rt.all_models())}" if model else "No model yet"
        )
        self.model_label.setToolTip(model)

    def bring_to_front(self) -> None:
        self.show()
        self.setWindowState(
            (self.windowState() & ~Qt.WindowState.WindowMinimized) | Qt.WindowState.WindowActive
        )
        self.raise_()
        self.activateWindow()

    def showEvent(self, e) -> None:
        super().showEvent(e)
        handle = self.windowHandle()
        if not self._shown_once and handle is not None:
            handle.installEventFilter(self)  # Expose arrives on the QWindow, not the widget

    def eventFilter(self, obj, e: QEvent) -> bool:
        if e.type() == QEvent.Type.Expose and not self._shown_once and obj.isExposed():
            self._shown_once = True
            obj.removeEventFilter(self)
            # After this event the backing store is flushed: the user sees the window.
            QTimer.singleShot(0, self.firstShown.emit)
        return False

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.tray_available:
            event.ignore()
            self.hide()
            self.closedToTray.emit()
        else:
            event.accept()
            self.quitRequested.emit()
