"""The hardware sampler: real psutil numbers, a fake NVML for the GPU path, events on the bus."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.kernel.monitor.hardware import NO_GPU, GpuProbe, HardwareSample, HardwareSampler


class FakeNvml:
    """The slice of pynvml the sampler uses, with one or more made-up boards."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, boards: list[dict], *, fail_init: Exception | None = None) -> None:
        self.boards = boards
        self.fail_init = fail_init
        self.shutdown_calls = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict:
        return self.boards[i]

    def nvmlDeviceGetUtilizationRates(self, h: dict) -> SimpleNamespace:
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: dict) -> SimpleNamespace:
        return SimpleNamespace(used=h["used"], total=h["total"], free=h["total"] - h["used"])

    def nvmlDeviceGetTemperature(self, h: dict, sensor: int) -> int:
        if h.get("temp") is None:
            raise RuntimeError("not supported")
        return h["temp"]

    def nvmlDeviceGetName(self, h: dict) -> bytes:
        return h["name"].encode()


def test_sample_reads_real_cpu_and_memory():
    s = HardwareSampler(gpu=GpuProbe(FakeNvml([]))).sample()
    assert 0.0 <= s.cpu_percent <= 100.0
    assert 0 < s.ram_used <= s.ram_total
    assert 0 < s.ram_percent <= 100
    assert s.process_rss > 10 * 1024 * 1024  # a Python process with pydantic loaded
    assert s.gpus == () and s.gpu_note == NO_GPU


def test_fake_gpu_is_reported_with_util_vram_and_temperature():
    nvml = FakeNvml(
        [
            {"name": "RTX Fake 4090", "util": 73, "used": 6 << 30, "total": 24 << 30, "temp": 61},
            {"name": "No Sensor", "util": 5, "used": 1 << 30, "total": 8 << 30, "temp": None},
        ]
    )
    probe = GpuProbe(nvml)
    s = HardwareSampler(gpu=probe).sample()
    assert [g.name for g in s.gpus] == ["RTX Fake 4090", "No Sensor"]
    assert s.gpus[0].util_percent == 73 and s.gpus[0].vram_used == 6 << 30 and s.gpus[0].temperature_c == 61
    assert s.gpus[1].temperature_c is None  # a board without a sensor is still sampled
    assert s.gpu_note == "" and probe.has_gpu
    probe.close()
    assert nvml.shutdown_calls == 1


def test_a_driver_that_fails_to_init_means_no_gpu_not_an_error():
    s = HardwareSampler(
        gpu=GpuProbe(FakeNvml([], fail_init=OSError("libnvidia-ml.so.1: not found")))
    ).sample()
    assert s.gpus == () and s.gpu_note == NO_GPU


def test_this_machine_without_nvidia_says_so_gracefully():
    s = HardwareSampler().sample()  # real pynvml: no driver here, no exception either
    if s.gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    assert NO_GPU in s.gpu_note


async def test_started_sampler_publishes_events_and_keeps_a_bounded_history(kernel):
    sub = kernel.events.subscribe()
    sampler = HardwareSampler(kernel, interval=0.01, keep=3, gpu=GpuProbe(FakeNvml([])))
    sampler.start()
    try:
        seen = []
        async with asyncio.timeout(10):
            async for event in sub:
                if isinstance(event, HardwareSample):
                    seen.append(event)
                    if len(seen) == 5:
                        break
    finally:
        await sampler.stop()
    assert not sampler.running
    assert len(sampler.history) == 3  # the ring buffer keeps only the newest
    assert sampler.history[-1].ts >= seen[0].ts
    assert all(e.gpu_note == NO_GPU for e in seen)


async def test_memory_of_loaded_local_models_comes_from_the_driver(kernel, tiny_gguf):
    pytest.importorskip("llama_cpp")
    await kernel.add_provider("local", "llamacpp", options={"models": [str(tiny_gguf)]})
    await kernel.refresh_provider("local")
    spec = kernel.list_models()[0]
    sampler = HardwareSampler(kernel, gpu=GpuProbe(FakeNvml([])))
    assert await sampler.model_memory() == ()
    await kernel.driver("local").load(spec)
    sample = await sampler.tick()
    assert [m.model for m in sample.models] == [spec.id]
    assert sample.models[0].bytes == spec.memory_bytes and spec.memory_bytes > 0


async def test_models_the_residency_manager_loaded_report_its_measured_size(kernel, tiny_gguf):
    pytest.importorskip("llama_cpp")
    if getattr(kernel, "residency", None) is None:
        pytest.skip("this kernel has no residency manager")
    await kernel.add_provider("local", "llamacpp", options={"models": [str(tiny_gguf)]})
    await kernel.refresh_provider("local")
    spec = kernel.list_models()[0]
    await kernel.residency.preload(spec, kernel.driver("local"))
    [resident] = kernel.residency.loaded()
    sample = await HardwareSampler(kernel, gpu=GpuProbe(FakeNvml([]))).tick()
    assert [(m.model, m.bytes, m.leases) for m in sample.models] == [(spec.id, resident.bytes, 0)]
