"""bench.mcp_calls runs end to end on a tiny budget and reports every figure it promises."""

from __future__ import annotations

from bench import mcp_calls


async def test_the_bench_measures_both_paths_and_cold_starts(monkeypatch, tmp_path):
    # the bench points these at a home of its own; monkeypatch puts them back afterwards
    monkeypatch.setenv("BYENATOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BYENATOS_SECRETS", "file")
    result = await mcp_calls.main(["--server", "echo", "--calls", "20", "--rounds", "2", "--concurrency", "4",
                                   "--cold", "1"])
    assert result["calls"] == 40
    for key in ("kernel_p50_ms", "kernel_p99_ms", "direct_p50_ms", "direct_p99_ms"):
        assert result[key] > 0
    assert result["seq_ratio"] > 0 and result["conc_ratio"] > 0
    assert result["cold_start_ms"]["kernel"] > 0 and result["cold_start_ms"]["direct"] > 0
