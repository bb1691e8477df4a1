"""What the desktop app hosts: the kernel, its gateway, the hardware sampler and the bridge.

One object the views share. It goes through the Kernel's public API only; the socket and
personalization APIs are used when the kernel has them (they land in their own issues),
and until then model switching sets the `default` model.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.kernel.canonical import ModelSpec
from app.kernel.config import Paths
from app.kernel.errors import ByenatosError
from app.kernel.events import ModelsChanged
from app.kernel.kernel import Kernel
from app.kernel.monitor.hardware import HardwareSampler
from app.ui.bridge import KernelBridge
from app.ui.preferences import DesktopPreferences, load_preferences, save_preferences

log = logging.getLogger(__name__)


class GatewayState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


class DesktopRuntime(QObject):
    """Starts and stops the hosted services; the views read state and call methods here."""

    ready = Signal()  # the kernel has started: views may read models, sockets, apps
    gatewayChanged = Signal(str)  # GatewayState
    currentModelChanged = Signal(str)  # model id ("" when none)
    error = Signal(str)  # a readable message for the status bar / banners

    def __init__(
        self,
        kernel: Kernel | None = None,
        *,
        paths: Paths | None = None,
        gateway_host: str | None = None,
        gateway_port: int | None = None,
        sample_hardware: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.kernel = kernel or Kernel(paths)
        self.prefs: DesktopPreferences = load_preferences(self.kernel.paths)
        self.bridge = KernelBridge(self.kernel.events, self)
        self.sampler = HardwareSampler(self.kernel)
        self.gateway: Any = None  # app.kernel.gateway.server.GatewayServer while it runs
        self.gateway_state = GatewayState.STOPPED
        self.gateway_error = ""
        # `byenatos --host/--port` (or a test) override the settings until Settings applies new
        # ones (the Settings view then clears `_gateway_port`, and the host override goes with it).
        if gateway_host is not None and gateway_port is None:
            gateway_port = self.kernel.settings.gateway.port
        self._gateway_host = gateway_host
        self._gateway_port = gateway_port
        self._sample_hardware = sample_hardware
        self._owns_kernel = kernel is None
        self._started = False
        self._scan_task: asyncio.Task[Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """The kernel's database is open: models, sockets and apps can be read."""
        return self._started

    async def start(self, *, scan: bool = True) -> None:
        await self.kernel.start()
        self.bridge.start()
        if self._sample_hardware:
            self.sampler.start()
        self._started = True
        # The window was built before the kernel was up (start-up time): now everything reloads.
        self.kernel.events.publish(ModelsChanged(provider=None, count=len(self.kernel.list_models())))
        self.ready.emit()
        await self.start_gateway()
        if scan:
            self._scan_task = asyncio.get_running_loop().create_task(self._scan())
        self.currentModelChanged.emit(self.current_model_id())

    async def stop(self) -> None:
        """Stop cleanly: the gateway first (in-flight requests end), then the kernel (databases)."""
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scan_task
        await self.stop_gateway()
        await self.sampler.stop()
        await self.bridge.stop()
        self._started = False
        if self._owns_kernel:
            await self.kernel.stop()

    async def start_gateway(self) -> bool:
        # The gateway's modules cost tens of milliseconds to import: after the window is on screen.
        from app.kernel.gateway.server import GatewayServer

        self._set_gateway(GatewayState.STARTING)
        host = self._gateway_host if self._gateway_port is not None else None
        try:
            self.gateway = await GatewayServer(self.kernel, host=host, port=self._gateway_port).start()
        except ByenatosError as e:
            self.gateway = None
            self.gateway_error = str(e)
            self._set_gateway(GatewayState.FAILED)
            self.error.emit(f"The local gateway could not start: {e}")
            return False
        self._announce(self.gateway)
        self.gateway_error = ""
        self._set_gateway(GatewayState.RUNNING)
        return True

    def _announce(self, gateway: Any) -> None:
        """The runtime file: the CLI and a later launch find this app's gateway by it."""
        from app.kernel import runtime_file

        try:
            runtime_file.write(self.kernel.paths, host=gateway.host, port=gateway.port, kind="app")
        except OSError as e:
            log.warning("could not write %s (the CLI will not find this app's gateway): %s",
                        self.kernel.paths.runtime_file, e)

    async def stop_gateway(self) -> None:
        if self.gateway is not None:
            from app.kernel import runtime_file

            gateway, self.gateway = self.gateway, None
            runtime_file.remove(self.kernel.paths)
            await gateway.stop()
        self._set_gateway(GatewayState.STOPPED)

    async def restart_gateway(self) -> bool:
        await self.stop_gateway()
        return await self.start_gateway()

    def _set_gateway(self, state: GatewayState) -> None:
        self.gateway_state = state
        self.gatewayChanged.emit(state.value)

    @property
    def gateway_url(self) -> str | None:
        return self.gateway.url if self.gateway is not None else None

    async def _scan(self) -> None:
        try:
            await self.kernel.scan()
        except Exception as e:  # discovery trouble is a note, never a crash
            log.warning("model scan failed: %s", e)
            self.error.emit(f"Looking for models failed: {e}")
        self.currentModelChanged.emit(self.current_model_id())

    # -- preferences -----------------------------------------------------------------------
    def save_prefs(self) -> None:
        save_preferences(self.kernel.paths, self.prefs)

    # -- models and the socket -------------------------------------------------------------
    @property
    def socket(self) -> Any:
        """The kernel's hot-swap socket (`app.kernel.socket.manager.SocketManager`)."""
        return self.kernel.socket

    def all_models(self) -> list[ModelSpec]:
        """Every model in the registry; [] until the kernel has started."""
        return self.kernel.list_models() if self._started else []

    def models(self) -> list[ModelSpec]:
        """The chat models (what a socket can hold)."""
        return [m for m in self.all_models() if m.capabilities.chat and not m.capabilities.embeddings]

    def aliases(self) -> list[Any]:
        """AliasState per socket (alias, model, fallbacks, routing); [] while no model exists."""
        if not self._started:
            return []
        try:
            return self.socket.aliases()
        except ByenatosError:
            return []

    def alias_config(self, alias: str = "default") -> Any | None:
        return next((s.config for s in self.aliases() if s.config.alias == alias), None)

    def current_model_id(self, alias: str = "default") -> str:
        config = self.alias_config(alias)
        return config.model if config is not None else ""

    async def swap(self, model_id: str, *, alias: str = "default", strategy: Any = None) -> ModelSpec:
        """Plug a model into a socket (graceful unless told otherwise); typed errors on failure."""
        from app.kernel.socket.manager import SwapStrategy

        result = await self.socket.swap(alias, model_id, strategy or SwapStrategy.GRACEFUL)
        self.currentModelChanged.emit(result.current)
        return self.kernel.registry.find_model(result.current)

    def set_fallbacks(self, alias: str, model_ids: list[str]) -> None:
        self.socket.configure(alias, fallbacks=model_ids)
