"""The hardware sampler: CPU, RAM and (where there is one) NVIDIA GPU use, once a second.

Qt-free: it publishes `HardwareSample` events on the kernel's bus and keeps a short ring
buffer of recent samples, so a view that opens late can draw the last minutes at once.
pynvml (nvidia-ml-py) is imported lazily and only once; a machine without an NVIDIA GPU or
driver gets `gpu=None` and a readable `gpu_note` instead of an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.kernel.events import Event

if TYPE_CHECKING:
    from app.kernel.canonical import ModelSpec
    from app.kernel.drivers.base import Driver


class ModelHost(Protocol):
    """What the sampler asks of the kernel about local models: what is registered and which
    drivers are alive (`Kernel` is one; a `residency` attribute, where present, is read too)."""

    def list_models(self) -> list[ModelSpec]: ...
    def live_drivers(self) -> dict[str, Driver]: ...

log = logging.getLogger(__name__)

NO_GPU = "no NVIDIA GPU"


@dataclass(frozen=True, slots=True)
class GpuSample:
    index: int
    name: str
    util_percent: float
    vram_used: int  # bytes
    vram_total: int
    temperature_c: float | None


@dataclass(frozen=True, slots=True)
class ModelMemory:
    model: str  # model id
    bytes: int | None  # None: the runtime did not say
    leases: int = 0  # requests using it right now (where the residency manager tracks it)


@dataclass(frozen=True, slots=True)
class HardwareSample(Event):
    cpu_percent: float
    ram_used: int  # bytes
    ram_total: int
    process_rss: int  # this process's resident memory
    gpus: tuple[GpuSample, ...] = ()
    gpu_note: str = ""  # why there is no GPU data ("no NVIDIA GPU", a driver error…)
    models: tuple[ModelMemory, ...] = field(default=())

    @property
    def ram_percent(self) -> float:
        return 100.0 * self.ram_used / self.ram_total if self.ram_total else 0.0


class GpuProbe:
    """NVML behind a small facade; `nvml` is injectable so tests can fake a GPU."""

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._handles: list[Any] | None = None
        self.note = ""

    def _init(self) -> list[Any]:
        if self._handles is not None:
            return self._handles
        self._handles = []
        try:
            nvml = self._nvml
            if nvml is None:
                import pynvml as nvml  # nvidia-ml-py; cheap, but only needed here
            nvml.nvmlInit()
            self._nvml = nvml
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            self.note = "" if self._handles else NO_GPU
        except ImportError:
            self.note = f"{NO_GPU} (nvidia-ml-py is not installed)"
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded…: all mean "no usable GPU"
            log.debug("NVML unavailable: %s", e)
            self.note = NO_GPU
        return self._handles

    @property
    def has_gpu(self) -> bool:
        return bool(self._handles)

    def sample(self) -> tuple[GpuSample, ...]:
        handles = self._init()
        out = []
        for i, h in enumerate(handles):
            nvml = self._nvml
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(h)
                mem = nvml.nvmlDeviceGetMemoryInfo(h)
                try:
                    temp: float | None = float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
                except Exception:  # some boards have no sensor
                    temp = None
                name = nvml.nvmlDeviceGetName(h)
                out.append(
                    GpuSample(
                        index=i,
                        name=name.decode() if isinstance(name, bytes) else str(name),
                        util_percent=float(util.gpu),
                        vram_used=int(mem.used),
                        vram_total=int(mem.total),
                        temperature_c=temp,
                    )
                )
            except Exception as e:  # a GPU that fell off the bus: say so, keep sampling the rest
                self.note = f"GPU {i}: {e}"
        return tuple(out)

    def close(self) -> None:
        if self._handles and self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._handles = None


class HardwareSampler:
    """Samples once per `interval` seconds while started; `history` keeps the last `keep` samples."""

    def __init__(
        self,
        kernel: ModelHost | None = None,
        *,
        interval: float = 1.0,
        keep: int = 120,
        gpu: GpuProbe | None = None,
    ) -> None:
        self.kernel = kernel
        self.interval = interval
        self.history: deque[HardwareSample] = deque(maxlen=keep)
        self.gpu = gpu or GpuProbe()
        self._task: asyncio.Task[None] | None = None
        self._process: Any = None

    def sample(self, models: tuple[ModelMemory, ...] = ()) -> HardwareSample:
        import psutil

        if self._process is None:
            self._process = psutil.Process(os.getpid())
            psutil.cpu_percent(None)  # the first call only starts the measuring window
        vm = psutil.virtual_memory()
        gpus = self.gpu.sample()
        return HardwareSample(
            cpu_percent=float(psutil.cpu_percent(None)),
            ram_used=int(vm.total - vm.available),
            ram_total=int(vm.total),
            process_rss=int(self._process.memory_info().rss),
            gpus=gpus,
            gpu_note="" if gpus else (self.gpu.note or NO_GPU),
            models=models,
        )

    async def model_memory(self) -> tuple[ModelMemory, ...]:
        """Memory of the local models resident now, as far as their drivers tell."""
        kernel = self.kernel
        if kernel is None:
            return ()
        out: dict[str, ModelMemory] = {}
        # The residency manager measured what it loaded, and knows which models are busy ...
        residency = getattr(kernel, "residency", None)
        if residency is not None:
            for r in residency.loaded():
                out[r.id] = ModelMemory(model=r.id, bytes=r.bytes, leases=r.leases)
        # ... other runtimes (a local Ollama) only say what they hold: their spec's estimate then.
        specs = {m.id: m for m in kernel.list_models()}
        # Only drivers already alive can hold a model; creating one just to ask would load nothing.
        for pid, driver in kernel.live_drivers().items():
            if not driver.manages_memory:
                continue
            try:
                names = await driver.loaded_models()
            except Exception:  # a local server that went away has nothing loaded
                continue
            for name in names:
                mid = f"{pid}/{name}"
                if mid not in out:
                    spec = specs.get(mid)
                    out[mid] = ModelMemory(model=mid, bytes=spec.memory_bytes if spec else None)
        return tuple(out.values())

    async def tick(self) -> HardwareSample:
        """One sample: taken, kept in the history and published."""
        models = await self.model_memory()
        # NVML calls can take milliseconds each: off the loop when there is a GPU to ask.
        sample = await asyncio.to_thread(self.sample, models) if self.gpu.has_gpu else self.sample(models)
        self.history.append(sample)
        if self.kernel is not None:
            self.kernel.events.publish(sample)
        return sample

    def start(self) -> HardwareSampler:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="hardware-sampler")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.gpu.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a sampling hiccup must not end the gauges for the session
                log.exception("hardware sample failed")
            await asyncio.sleep(self.interval)
