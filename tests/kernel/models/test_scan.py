"""`Kernel.scan()`: discovery applied to the registry, end to end with real files and servers."""

from __future__ import annotations

import shutil

from app.kernel.canonical import ChatMessage, ChatRequest


async def test_scan_records_gguf_files_servers_and_env_keys(kernel, tiny_gguf, tmp_path, ollama_upstream,
                                                           openai_upstream, monkeypatch):
    models_dir = tmp_path / "ggufs"
    models_dir.mkdir()
    shutil.copy(tiny_gguf, models_dir / "tiny-chat.gguf")
    d = kernel.settings.discovery
    d.scan_default_dirs = False
    d.gguf_dirs = [str(models_dir)]
    d.local_servers = {"ollama": ollama_upstream.url, "lmstudio": openai_upstream.api_base,
                       "vllm": "http://127.0.0.1:9/v1"}
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-secret")

    report = await kernel.scan()

    ids = {m.id for m in kernel.list_models()}
    assert "local/tiny-chat" in ids
    assert {f"ollama/{name}" for name in ollama_upstream.models} <= ids
    assert {"lmstudio/gpt-fake-mini", "lmstudio/gpt-fake-large"} <= ids
    # DeepSeek is unreachable here, so its models come from the built-in catalog, and the note says so
    assert any(i.startswith("deepseek/") for i in ids)
    assert any("deepseek" in n and "catalog" in n for n in report.notes)
    assert any("not running" in n for n in report.notes)
    providers = {p.id: p for p in kernel.registry.providers()}
    assert providers["deepseek"].key_source == "env:DEEPSEEK_API_KEY"
    assert "sk-deepseek-secret" not in repr(report)

    # the Ollama driver's own listing replaced discovery's rough one (context window from /api/show)
    ollama_spec = next(m for m in kernel.list_models() if m.provider == "ollama")
    assert ollama_spec.context_window != 4096


async def test_scan_twice_is_idempotent_and_drops_vanished_files(kernel, tiny_gguf, tmp_path):
    models_dir = tmp_path / "ggufs"
    models_dir.mkdir()
    shutil.copy(tiny_gguf, models_dir / "a.gguf")
    shutil.copy(tiny_gguf, models_dir / "b.gguf")
    d = kernel.settings.discovery
    d.scan_default_dirs, d.probe_local_servers, d.gguf_dirs = False, False, [str(models_dir)]
    await kernel.scan()
    await kernel.scan()
    assert [m.id for m in kernel.list_models()] == ["local/a", "local/b"]
    (models_dir / "b.gguf").unlink()
    await kernel.scan()
    assert [m.id for m in kernel.list_models()] == ["local/a"]


async def test_scanned_server_model_answers_through_the_kernel(kernel, openai_upstream):
    d = kernel.settings.discovery
    d.scan_default_dirs, d.local_servers = False, {"lmstudio": openai_upstream.api_base}
    await kernel.scan()
    answer = await kernel.chat(ChatRequest(model="lmstudio/gpt-fake-mini",
                                           messages=[ChatMessage(role="user", content="hi")]))
    assert answer.message.content == openai_upstream.reply_text
