"""The Hardware view: live gauges and 1 Hz history for CPU, RAM, GPU, VRAM and temperature,
memory per loaded local model, and the gateway's request rate and latency."""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtWidgets import QGridLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget, QVBoxLayout, QWidget

from app.kernel.monitor.hardware import HardwareSample
from app.ui.views.base import View
from app.ui.widgets.gauge import Gauge
from app.ui.widgets.model_card import human_bytes
from app.ui.widgets.sparkline import Sparkline

GB = 1024**3


class HardwareView(View):
    title = "Hardware"
    icon_name = "hardware"
    subtitle = "What this machine is doing, once a second."

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(runtime, parent)
        gauges = QHBoxLayout()
        self.cpu = Gauge("CPU")
        self.ram = Gauge("RAM")
        # The GPU's three gauges and two charts sit in their own boxes: without a GPU they are
        # hidden (one line says so) and CPU and RAM take the room.
        self.gpu_gauges = QWidget(self)
        gg = QHBoxLayout(self.gpu_gauges)
        gg.setContentsMargins(0, 0, 0, 0)
        self.gpu = Gauge("GPU")
        self.vram = Gauge("VRAM")
        self.temp = Gauge("GPU temp", unit="°C")
        for g in (self.gpu, self.vram, self.temp):
            gg.addWidget(g)
        gauges.addWidget(self.cpu)
        gauges.addWidget(self.ram)
        gauges.addWidget(self.gpu_gauges, 3)
        self.body.addLayout(gauges)
        self.gpu_note = QLabel("", self)
        self.gpu_note.setObjectName("Muted")
        self.gpu_note.setWordWrap(True)
        self.body.addWidget(self.gpu_note)

        charts = QGridLayout()
        self.cpu_hist = Sparkline("CPU")
        self.ram_hist = Sparkline("RAM")
        self.gpu_charts = QWidget(self)
        gc = QHBoxLayout(self.gpu_charts)
        gc.setContentsMargins(0, 0, 0, 0)
        self.gpu_hist = Sparkline("GPU")
        self.vram_hist = Sparkline("VRAM")
        gc.addWidget(self.gpu_hist)
        gc.addWidget(self.vram_hist)
        charts.addWidget(self.cpu_hist, 0, 0)
        charts.addWidget(self.ram_hist, 0, 1)
        charts.addWidget(self.gpu_charts, 1, 0, 1, 2)
        self.body.addLayout(charts)
        self.has_gpu: bool | None = None  # None until the first sample says

        lower = QHBoxLayout()
        models_box = QGroupBox("Loaded local models", self)
        mb = QVBoxLayout(models_box)
        self.models = QListWidget(models_box)
        self.models.setAccessibleName("Loaded local models and their memory")
        mb.addWidget(self.models)
        lower.addWidget(models_box, 1)
        req_box = QGroupBox("Requests", self)
        rb = QVBoxLayout(req_box)
        self.rate = QLabel("0 requests in the last minute", req_box)
        self.latency = QLabel("latency: —", req_box)
        self.process = QLabel("ByenatOS memory: —", req_box)
        self.rate_hist = Sparkline("requests/min", maximum=None, unit="")
        for w in (self.rate, self.latency, self.process, self.rate_hist):
            rb.addWidget(w)
        lower.addWidget(req_box, 1)
        self.body.addLayout(lower)
        self.body.addStretch(1)

        self._requests: deque[tuple[float, float]] = deque(maxlen=5000)  # (when, latency ms)
        self.samples_shown = 0
        self.last_sample: HardwareSample | None = None
        for s in runtime.sampler.history:
            self.show_sample(s)
        runtime.bridge.hardwareSample.connect(self.show_sample)
        runtime.bridge.requestFinished.connect(self._on_request)

    def show_sample(self, s: HardwareSample) -> None:
        self.last_sample = s
        self.samples_shown += 1
        self.cpu.set_value(s.cpu_percent)
        self.ram.set_value(s.ram_percent, f"{s.ram_used / GB:.1f} / {s.ram_total / GB:.0f} GB")
        self.cpu_hist.append(s.cpu_percent)
        self.ram_hist.append(s.ram_percent)
        self._show_gpu(bool(s.gpus))
        if s.gpus:
            g = s.gpus[0]
            vram_pct = 100.0 * g.vram_used / g.vram_total if g.vram_total else 0.0
            self.gpu.set_value(g.util_percent, g.name)
            self.vram.set_value(vram_pct, f"{g.vram_used / GB:.1f} / {g.vram_total / GB:.0f} GB")
            self.temp.set_value(g.temperature_c, "" if g.temperature_c is not None else "no sensor")
            self.gpu_hist.append(g.util_percent)
            self.vram_hist.append(vram_pct)
            extra = f" (+{len(s.gpus) - 1} more)" if len(s.gpus) > 1 else ""
            self.gpu_note.setText(f"{g.name}{extra}")
        else:
            note = s.gpu_note or "no NVIDIA GPU"
            for gauge in (self.gpu, self.vram, self.temp):
                gauge.set_value(None, note)
            for chart in (self.gpu_hist, self.vram_hist):
                chart.placeholder = note
                chart.update()
            said = "No NVIDIA GPU" if note.lower() == "no nvidia gpu" else f"No GPU ({note})"
            self.gpu_note.setText(f"{said}: local models run on the CPU.")
        self.models.clear()
        if s.models:
            for m in s.models:
                busy = f" · serving {m.leases}" if m.leases else ""
                self.models.addItem(f"{m.model} — {human_bytes(m.bytes) if m.bytes else 'size unknown'}{busy}")
        else:
            self.models.addItem("No local model is loaded right now.")
        self.process.setText(f"ByenatOS memory: {human_bytes(s.process_rss)}")
        self.rate_hist.append(self._update_requests())

    def _show_gpu(self, present: bool) -> None:
        if present == self.has_gpu:
            return
        self.has_gpu = present
        self.gpu_gauges.setVisible(present)
        self.gpu_charts.setVisible(present)

    def _on_request(self, event) -> None:
        self._requests.append((time.time(), float(event.latency_ms)))
        self._update_requests()

    def _update_requests(self) -> int:
        now = time.time()
        recent = [lat for t, lat in self._requests if now - t <= 60]
        self.rate.setText(f"{len(recent)} request{'s' if len(recent) != 1 else ''} in the last minute")
        if recent:
            ordered = sorted(recent)
            p50 = ordered[len(ordered) // 2]
            p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            self.latency.setText(f"latency: p50 {p50:.0f} ms · p95 {p95:.0f} ms")
        else:
            self.latency.setText("latency: —")
        return len(recent)
