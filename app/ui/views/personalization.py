"""The Personalization view: the PSP as the next request would get it, its layers, Core rules,
HiNATA records (search, forget), per-app injection, pause, export and delete-all."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from app.ui.views.base import View


class PersonalizationView(View):
    title = "Personalization"
    icon_name = "personalization"
    subtitle = (
        "Your Personal System Prompt: what apps that opted in receive, and the memory it is built from."
    )

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(runtime, parent)
        self.note = QLabel("", self)
        self.note.setWordWrap(True)
        self.body.addWidget(self.note)
        self.body.addStretch(1)
        self.activated()

    def activated(self) -> None:
        if getattr(self.runtime.kernel, "personal", None) is None:
            self.note.setText("Personalization is not part of this kernel yet.")
