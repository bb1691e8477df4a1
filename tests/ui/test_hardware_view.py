"""The Hardware view: gauges and history update from samples; no GPU is said, not an error."""

from __future__ import annotations

from app.kernel.events import RequestFinished
from app.kernel.monitor.hardware import GpuSample, HardwareSample, ModelMemory
from app.ui.views.hardware import HardwareView

GB = 1024**3


def sample(cpu: float, *, gpus=(), note: str = "no NVIDIA GPU", models=()) -> HardwareSample:
    return HardwareSample(
        cpu_percent=cpu,
        ram_used=6 * GB,
        ram_total=16 * GB,
        process_rss=120 * 1024**2,
        gpus=gpus,
        gpu_note="" if gpus else note,
        models=models,
    )


async def test_gauges_and_history_follow_samples(runtime, qtbot):
    view = HardwareView(runtime)
    qtbot.addWidget(view)
    for cpu in (10.0, 20.0, 35.0):
        runtime.bridge.emit_event(sample(cpu))
    assert view.cpu.value == 35.0 and view.cpu.text() == "35%"
    assert round(view.ram.value) == 38 and "16 GB" in view.ram.detail
    assert list(view.cpu_hist.values) == [10.0, 20.0, 35.0]
    assert view.process.text() == "ByenatOS memory: 120.0 MB"


async def test_no_gpu_is_said_once_and_cpu_and_ram_take_the_room(runtime, qtbot):
    """Not three dead gauges and two empty graphs: one line, and the space goes to CPU and RAM."""
    view = HardwareView(runtime)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    runtime.bridge.emit_event(sample(5.0))
    assert view.gpu.value is None and view.vram.value is None and view.temp.value is None
    assert view.gpu_note.text() == "No NVIDIA GPU: local models run on the CPU."
    for widget in (view.gpu, view.vram, view.temp, view.gpu_hist, view.vram_hist):
        assert not widget.isVisibleTo(view)
    view.layout().activate()
    content = view.width() - 40  # the view's margins
    assert view.cpu.width() + view.ram.width() >= 0.9 * content
    assert view.cpu_hist.width() + view.ram_hist.width() >= 0.9 * content
    view.grab()  # paints without a GPU value (no exception in paintEvent)


async def test_gpu_values_and_model_memory(runtime, qtbot):
    view = HardwareView(runtime)
    qtbot.addWidget(view)
    gpu = GpuSample(
        index=0, name="RTX Fake", util_percent=81, vram_used=12 * GB, vram_total=24 * GB, temperature_c=67
    )
    runtime.bridge.emit_event(sample(5.0, gpus=(gpu,), models=(ModelMemory("local/tiny", 300 * 1024**2),)))
    assert view.gpu.value == 81 and view.vram.value == 50.0 and view.temp.value == 67
    assert view.gpu_note.text() == "RTX Fake"
    assert view.models.item(0).text() == "local/tiny — 300.0 MB"
    assert all(w.isVisibleTo(view) for w in (view.gpu, view.vram, view.temp, view.gpu_hist, view.vram_hist))
    view.grab()


async def test_request_rate_and_latency(runtime, qtbot):
    view = HardwareView(runtime)
    qtbot.addWidget(view)
    for ms in (100.0, 200.0, 300.0):
        runtime.bridge.emit_event(
            RequestFinished(
                model="m",
                provider="p",
                app=None,
                stream=True,
                latency_ms=ms,
                prompt_tokens=1,
                completion_tokens=1,
                cost=0.0,
                outcome="ok",
            )
        )
    assert view.rate.text() == "3 requests in the last minute"
    assert view.latency.text() == "latency: p50 200 ms · p95 300 ms"


async def test_the_real_sampler_feeds_the_view(runtime, qtbot):
    from tests.ui.conftest import wait_signal

    view = HardwareView(runtime)
    qtbot.addWidget(view)
    runtime.sampler.interval = 0.05
    runtime.sampler.start()
    try:
        await wait_signal(runtime.bridge.hardwareSample)
        await wait_signal(runtime.bridge.hardwareSample)
    finally:
        await runtime.sampler.stop()
    assert view.samples_shown >= 2 and view.cpu.value is not None
