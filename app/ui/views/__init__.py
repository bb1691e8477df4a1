"""The main window's views. Each declares its title and icon; the window lists them in order."""

from __future__ import annotations

from app.ui.views.base import View

__all__ = ["View", "view_classes"]


def view_classes() -> list[type[View]]:
    from app.ui.views.activity import ActivityView
    from app.ui.views.hardware import HardwareView
    from app.ui.views.marketplace import MarketplaceView
    from app.ui.views.personalization import PersonalizationView
    from app.ui.views.settings import SettingsView
    from app.ui.views.socket_view import SocketView

    return [SocketView, MarketplaceView, HardwareView, PersonalizationView, ActivityView, SettingsView]
