"""Discovery: GGUF files planted in real folders, real servers on loopback, environment keys."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from aiohttp import web

from app.kernel.canonical import Repository
from app.kernel.config import DiscoverySettings, Paths
from app.kernel.models import discovery as discovery_module
from app.kernel.models.discovery import (
    LOCAL_PROVIDER,
    Discovery,
    discover,
    huggingface_hub_cache,
    openai_base_url,
    vendor_for,
)
from app.kernel.models.presets import presets_by_env
from tests.fakes.upstream import Fault

SECRET = "sk-test-DO-NOT-LEAK-8f3a91c2"


@pytest.fixture(autouse=True)
def isolated(home, tmp_path, monkeypatch):
    """No real home folder, HF cache or provider key of the developer's leaks into a test."""
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    for var in (
        "HF_HOME",
        "HF_HUB_CACHE",
        *(p.base_url_env for p in presets_by_env().values() if p.base_url_env),
    ):
        monkeypatch.delenv(var, raising=False)
    for var in presets_by_env():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(discovery_module, "_header_cache", {})
    return user_home


@pytest.fixture
def paths(home) -> Paths:
    return Paths.default().ensure()


def only(**kw) -> DiscoverySettings:
    """Settings with every source off except what the test names."""
    base = {"scan_default_dirs": False, "probe_local_servers": False, "env_keys": False, "local_servers": {}}
    return DiscoverySettings(**{**base, **kw})


def make_gguf(
    path: Path,
    *,
    arch: str = "llama",
    name: str | None = None,
    context: int = 2048,
    general_type: str | None = None,
    rows: int = 16,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(path, arch=arch)
    if name:
        w.add_name(name)
    if general_type:
        w.add_type(general_type)
    w.add_context_length(context)
    w.add_block_count(2)
    w.add_embedding_length(32)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("token_embd.weight", np.zeros((rows, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def by_id(d: Discovery) -> dict:
    return {m.id: m for m in d.models}


def provider(d: Discovery, pid: str):
    matches = [p for p in d.providers if p.id == pid]
    assert len(matches) == 1, d.providers
    return matches[0]


# -- GGUF files -------------------------------------------------------------------------------


async def test_gguf_files_in_configured_folders_and_our_models_dir(tmp_path, paths):
    extra = tmp_path / "my-models"
    planted = make_gguf(
        extra / "qwen" / "Qwen2.5-0.5B" / "qwen2.5-0.5b-instruct-q4_k_m.gguf", arch="qwen2", context=32768
    )
    ours = make_gguf(paths.models_dir / "tiny.gguf", name="Tiny Llama", context=2048)

    d = await discover(only(gguf_dirs=[str(extra)]), paths)

    models = by_id(d)
    assert set(models) == {"local/qwen2.5-0.5b-instruct-q4_k_m", "local/tiny"}
    qwen = models["local/qwen2.5-0.5b-instruct-q4_k_m"]
    assert qwen.provider == LOCAL_PROVIDER and qwen.name == "qwen2.5-0.5b-instruct-q4_k_m"
    assert qwen.path == str(planted)
    assert qwen.context_window == 32768
    assert qwen.vendor == "qwen"
    assert qwen.local and qwen.repository is Repository.LOCAL
    assert qwen.memory_bytes > planted.stat().st_size  # weights plus a KV cache
    assert models["local/tiny"].path == str(ours) and models["local/tiny"].vendor == "meta"
    local = provider(d, LOCAL_PROVIDER)
    assert (local.kind, local.origin, local.model_count, local.key_env) == ("llamacpp", "discovered", 2, None)
    assert f"{extra}: 1 GGUF model" in d.notes


async def test_usual_folders_lm_studio_and_hugging_face_cache(isolated, tmp_path, paths, monkeypatch):
    make_gguf(
        isolated / ".lmstudio" / "models" / "lmstudio-community" / "gemma" / "gemma-3-1b-Q4_K_M.gguf",
        arch="gemma3",
    )
    make_gguf(isolated / ".cache" / "lm-studio" / "models" / "TheBloke" / "old" / "old-model.Q4_0.gguf")
    # Hugging Face hub cache: snapshots hold links into blobs/, named as in the repo
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    repo = hf_home / "hub" / "models--bartowski--Phi-3.5-mini-instruct-GGUF"
    blob = make_gguf(repo / "blobs" / "9f2c5e0d41a7b3", arch="phi3")
    for rev in ("a1b2c3", "d4e5f6"):  # two revisions sharing one blob: one model
        link = repo / "snapshots" / rev / "Phi-3.5-mini-instruct-Q4_K_M.gguf"
        link.parent.mkdir(parents=True)
        link.symlink_to(Path("..", "..", "blobs", blob.name))  # relative, as huggingface_hub makes them
    (hf_home / "hub" / ".locks").mkdir()
    make_gguf(hf_home / "hub" / "datasets--someone--data" / "snapshots" / "r" / "not-a-model.gguf")

    d = await discover(only(scan_default_dirs=True), paths)

    models = by_id(d)
    assert set(models) == {
        "local/gemma-3-1b-Q4_K_M",
        "local/old-model.Q4_0",
        "local/Phi-3.5-mini-instruct-Q4_K_M",
    }
    phi = models["local/Phi-3.5-mini-instruct-Q4_K_M"]
    assert phi.vendor == "microsoft"
    assert Path(phi.path).name == "Phi-3.5-mini-instruct-Q4_K_M.gguf"  # the name, not the blob hash
    assert models["local/gemma-3-1b-Q4_K_M"].vendor == "google"


async def test_default_folders_are_skipped_when_told_to(isolated, paths):
    make_gguf(isolated / ".lmstudio" / "models" / "a" / "b" / "m.gguf")
    d = await discover(only(scan_default_dirs=False), paths)
    assert d.models == [] and d.providers == []


def test_hugging_face_cache_location_follows_the_environment(isolated, tmp_path, monkeypatch):
    assert huggingface_hub_cache() == isolated / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert huggingface_hub_cache() == tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert huggingface_hub_cache() == tmp_path / "hub-cache"


async def test_one_file_reached_twice_is_one_model(tmp_path, paths):
    real = make_gguf(paths.models_dir / "shared.gguf")
    elsewhere = tmp_path / "links"
    elsewhere.mkdir()
    (elsewhere / "alias.gguf").symlink_to(real)
    d = await discover(only(gguf_dirs=[str(elsewhere), str(paths.models_dir)]), paths)
    assert len(d.models) == 1


async def test_symlink_loops_are_walked_once(tmp_path, paths):
    root = tmp_path / "loopy"
    make_gguf(root / "sub" / "m.gguf")
    (root / "sub" / "back-up").symlink_to(root, target_is_directory=True)
    (root / "self").symlink_to(root / "self")  # a link to itself: broken, not a folder
    d = await discover(only(gguf_dirs=[str(root)]), paths)
    assert [m.id for m in d.models] == ["local/m"]
    # not merely de-duplicated afterwards: the walk itself meets the file once
    walked = list(discovery_module._Walker([]).gguf_files(root))
    assert walked == [root / "sub" / "m.gguf"]


async def test_broken_files_are_notes_and_the_rest_is_still_found(tmp_path, paths):
    folder = tmp_path / "mixed"
    make_gguf(folder / "good.gguf")
    broken = folder / "broken.gguf"
    broken.write_text("<html>404</html>")
    cut = make_gguf(folder / "partial.gguf", rows=4096)
    os.truncate(cut, cut.stat().st_size // 2)
    (folder / "dangling.gguf").symlink_to(folder / "gone.gguf")

    d = await discover(only(gguf_dirs=[str(folder)]), paths)

    assert [m.id for m in d.models] == ["local/good"]
    assert f"skipped {broken}: not a GGUF file" in d.notes
    assert any(n.startswith(f"skipped {cut}: truncated") for n in d.notes)
    assert f"skipped {folder / 'dangling.gguf'}: broken link" in d.notes


async def test_split_models_use_the_first_part_and_need_every_part(tmp_path, paths):
    folder = tmp_path / "split"
    parts = [make_gguf(folder / f"Big-Model-Q4_K_M-{i:05d}-of-00003.gguf") for i in (1, 2, 3)]
    make_gguf(folder / "Half-00001-of-00002.gguf")  # its second part is missing

    d = await discover(only(gguf_dirs=[str(folder)]), paths)

    assert [m.id for m in d.models] == ["local/Big-Model-Q4_K_M"]
    big = d.models[0]
    assert big.path == str(parts[0])
    assert big.memory_bytes >= sum(p.stat().st_size for p in parts)
    assert any("Half-00001-of-00002.gguf" in n and "1 of 2 parts" in n for n in d.notes)


async def test_projectors_and_adapters_are_not_models(tmp_path, paths):
    folder = tmp_path / "vision"
    make_gguf(folder / "llava-v1.6-Q4_K_M.gguf")
    make_gguf(folder / "mmproj-model-f16.gguf", arch="clip")
    make_gguf(folder / "projector.gguf", arch="clip")
    make_gguf(folder / "style-lora.gguf", general_type="adapter")

    d = await discover(only(gguf_dirs=[str(folder)]), paths)

    assert [m.id for m in d.models] == ["local/llava-v1.6-Q4_K_M"]
    assert any("projector.gguf: a multimodal projector" in n for n in d.notes)
    assert any("style-lora.gguf: a LoRA adapter" in n for n in d.notes)


async def test_same_file_name_in_two_folders_gets_two_ids(tmp_path, paths):
    a = make_gguf(tmp_path / "a" / "model.gguf", context=1024)
    b = make_gguf(tmp_path / "b" / "model.gguf", context=8192)
    d = await discover(only(gguf_dirs=[str(tmp_path / "a"), str(tmp_path / "b")]), paths)
    models = by_id(d)
    assert (models["local/model"].path, models["local/model-2"].path) == (str(a), str(b))


async def test_embedding_models_are_marked_as_such(tmp_path, paths):
    make_gguf(tmp_path / "e" / "nomic-embed-text-v1.5.f16.gguf", arch="nomic-bert")
    d = await discover(only(gguf_dirs=[str(tmp_path / "e")]), paths)
    caps = d.models[0].capabilities
    assert caps.embeddings and not caps.chat


async def test_walking_stops_at_the_entry_budget(tmp_path, paths, monkeypatch):
    monkeypatch.setattr(discovery_module, "MAX_WALK_ENTRIES", 50)
    for i in range(30):
        (tmp_path / "wide" / f"d{i:02d}").mkdir(parents=True)
        (tmp_path / "wide" / f"d{i:02d}" / "notes.txt").write_text("x")
    make_gguf(tmp_path / "wide" / "d29" / "late.gguf")  # beyond the budget
    d = await discover(only(gguf_dirs=[str(tmp_path / "wide")]), paths)
    assert d.models == []
    assert "stopped scanning after 50 entries; add narrower GGUF folders" in d.notes


async def test_missing_configured_folder_is_a_note(tmp_path, paths):
    d = await discover(only(gguf_dirs=[str(tmp_path / "nowhere")]), paths)
    assert f"GGUF folder {tmp_path / 'nowhere'} does not exist" in d.notes


async def test_unchanged_files_are_not_read_again_but_changed_ones_are(tmp_path, paths, monkeypatch):
    path = make_gguf(tmp_path / "c" / "m.gguf", context=1024)
    reads: list[str] = []
    real_reader = discovery_module.read_gguf_header

    def counting_reader(p):
        reads.append(p)
        return real_reader(p)

    monkeypatch.setattr(discovery_module, "read_gguf_header", counting_reader)
    settings = only(gguf_dirs=[str(tmp_path / "c")])
    assert (await discover(settings, paths)).models[0].context_window == 1024
    assert (await discover(settings, paths)).models[0].context_window == 1024
    assert len(reads) == 1
    make_gguf(path, context=4096, rows=32)  # a new download over the old file
    assert (await discover(settings, paths)).models[0].context_window == 4096
    assert len(reads) == 2


# -- environment keys ------------------------------------------------------------------------------


async def test_env_keys_become_providers_without_the_key_itself(paths, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GROQ_API_KEY", SECRET + "-groq")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "   ")
    monkeypatch.setenv("AZURE_API_KEY", SECRET + "-azure")  # without AZURE_API_BASE: unusable

    d = await discover(only(env_keys=True), paths)

    openai = provider(d, "openai")
    assert (openai.kind, openai.base_url, openai.key_env, openai.origin) == (
        "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "env",
    )  # fmt: skip
    assert provider(d, "groq").base_url == "https://api.groq.com/openai/v1"
    assert {p.id for p in d.providers} == {"openai", "groq"}
    assert "OPENAI_API_KEY found: OpenAI provider available" in d.notes
    assert "DEEPSEEK_API_KEY is set but empty: ignored" in d.notes
    assert any(n.startswith("AZURE_API_KEY found, but") and "AZURE_API_BASE" in n for n in d.notes)
    everything = repr(d) + str([dataclasses.asdict(p) for p in d.providers]) + str(d.notes)
    everything += "".join(m.model_dump_json() for m in d.models)
    assert SECRET not in everything


async def test_azure_with_its_endpoint_is_a_provider(paths, monkeypatch):
    monkeypatch.setenv("AZURE_API_KEY", SECRET)
    monkeypatch.setenv("AZURE_API_BASE", "https://my-resource.openai.azure.com")
    d = await discover(only(env_keys=True), paths)
    azure = provider(d, "azure")
    assert (azure.kind, azure.base_url, azure.key_env) == (
        "litellm",
        "https://my-resource.openai.azure.com",
        "AZURE_API_KEY",
    )


async def test_env_keys_are_ignored_when_turned_off(paths, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    d = await discover(only(env_keys=False), paths)
    assert d.providers == []
    assert not any("OPENAI_API_KEY" in n for n in d.notes)


# -- local servers ------------------------------------------------------------------------------------


async def test_ollama_models_are_listed_with_their_sizes(paths, ollama_upstream):
    d = await discover(only(probe_local_servers=True, local_servers={"ollama": ollama_upstream.url}), paths)

    ollama = provider(d, "ollama")
    assert (ollama.kind, ollama.base_url, ollama.origin, ollama.model_count) == (
        "ollama", ollama_upstream.url, "discovered", 3,
    )  # fmt: skip
    models = by_id(d)
    assert set(models) == {"ollama/llama3.2:latest", "ollama/qwen2.5:0.5b", "ollama/nomic-embed-text:latest"}
    llama = models["ollama/llama3.2:latest"]
    assert llama.memory_bytes == 2_019_393_189 and llama.vendor == "meta" and llama.local
    assert models["ollama/nomic-embed-text:latest"].capabilities.embeddings
    assert f"Ollama at 127.0.0.1:{ollama_upstream.port}: 3 models" in d.notes
    assert [(r.method, r.path) for r in ollama_upstream.requests] == [("GET", "/api/tags")]


async def test_openai_compatible_servers_list_their_models(paths, openai_upstream):
    openai_upstream.models = ["qwen2.5-7b-instruct", {"id": "llama-3.1-8b", "max_model_len": 65536}]
    servers = {"lmstudio": openai_upstream.api_base, "vllm": openai_upstream.url}  # with and without /v1
    d = await discover(only(probe_local_servers=True, local_servers=servers), paths)

    for pid in ("lmstudio", "vllm"):
        p = provider(d, pid)
        assert (p.kind, p.base_url, p.model_count) == ("openai", openai_upstream.api_base, 2)
    models = by_id(d)
    assert set(models) == {
        "lmstudio/qwen2.5-7b-instruct", "lmstudio/llama-3.1-8b", "vllm/qwen2.5-7b-instruct", "vllm/llama-3.1-8b",
    }  # fmt: skip
    assert models["vllm/llama-3.1-8b"].context_window == 65536
    assert models["lmstudio/qwen2.5-7b-instruct"].vendor == "qwen"
    assert f"LM Studio at 127.0.0.1:{openai_upstream.port}: 2 models" in d.notes
    assert {r.path for r in openai_upstream.requests} == {"/v1/models"}


async def test_a_server_that_is_not_running_is_a_note_and_the_rest_still_comes(tmp_path, paths, monkeypatch):
    port = free_port()
    make_gguf(tmp_path / "g" / "m.gguf")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings = only(
        gguf_dirs=[str(tmp_path / "g")], env_keys=True, probe_local_servers=True,
        local_servers={"lmstudio": f"http://127.0.0.1:{port}/v1"},
    )  # fmt: skip

    d = await discover(settings, paths)

    assert f"LM Studio at 127.0.0.1:{port}: not running" in d.notes
    assert {p.id for p in d.providers} == {LOCAL_PROVIDER, "openai"}
    assert [m.id for m in d.models] == ["local/m"]


async def test_a_hanging_server_costs_no_more_than_the_probe_timeout(paths, openai_upstream, ollama_upstream):
    openai_upstream.fault = Fault(kind="hang")  # accepts the request, never answers
    settings = only(
        probe_local_servers=True, probe_timeout=0.3,
        local_servers={"vllm": openai_upstream.url, "ollama": ollama_upstream.url},
    )  # fmt: skip
    discovery_module._import_http_client()  # a cold import is start-up cost, not probe time
    started = time.perf_counter()
    d = await discover(settings, paths)
    elapsed = time.perf_counter() - started

    assert f"vLLM at 127.0.0.1:{openai_upstream.port}: no answer within 0.3 s" in d.notes
    assert provider(d, "ollama").model_count == 3  # probed alongside, not after
    assert elapsed < 0.3 + 1.0, f"took {elapsed:.2f} s"


@pytest.fixture
async def html_server():
    """A real web server on loopback that answers /v1/models with an HTML page."""

    async def html_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/v1/models", html_page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_servers_answering_wrongly_are_notes(paths, openai_upstream, html_server):
    openai_upstream.fault = Fault(kind="status", status=500, times=1)
    servers = {
        "vllm": openai_upstream.url,
        "llamacpp-server": html_server,
        "ollama": html_server,  # not Ollama: no /api/tags there
    }
    d = await discover(only(probe_local_servers=True, local_servers=servers), paths)

    assert d.providers == [] and d.models == []
    where = html_server.removeprefix("http://")
    assert f"vLLM at 127.0.0.1:{openai_upstream.port}: answered HTTP 500 to GET /v1/models" in d.notes
    assert (
        f"llama.cpp server at {where}: unexpected answer to GET /v1/models; is it really llama.cpp server?"
        in d.notes
    )
    assert f"Ollama at {where}: answered HTTP 404 to GET /api/tags" in d.notes


async def test_a_user_named_server_is_probed_as_openai_compatible(paths, openai_upstream):
    d = await discover(only(probe_local_servers=True, local_servers={"my-box": openai_upstream.url}), paths)
    box = provider(d, "my-box")
    assert (box.kind, box.model_count) == ("openai", 2)
    assert f"my-box at 127.0.0.1:{openai_upstream.port}: 2 models" in d.notes


# -- the whole ----------------------------------------------------------------------------------------


async def test_one_broken_source_does_not_sink_the_others(paths, monkeypatch):
    def exploding_scan(roots):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(discovery_module, "scan_gguf", exploding_scan)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    d = await discover(only(env_keys=True), paths)
    assert "Scanning for GGUF files failed: disk on fire" in d.notes
    assert provider(d, "openai").origin == "env"


async def test_an_empty_machine_yields_only_notes(paths):
    ports = [free_port() for _ in range(4)]
    servers = dict(
        zip(
            ["ollama", "lmstudio", "llamacpp-server", "vllm"],
            [f"http://127.0.0.1:{p}" for p in ports],
            strict=True,
        )
    )
    d = await discover(
        DiscoverySettings(
            scan_default_dirs=True, probe_local_servers=True, env_keys=True, local_servers=servers
        ),
        paths,
    )
    assert d.providers == [] and d.models == []
    assert sum(n.endswith(": not running") for n in d.notes) == 4


def test_vendor_hints():
    assert vendor_for("Mistral-7B-Instruct-v0.3", "llama") == "mistral"
    assert vendor_for("dolphin-2.9", "qwen2") == "qwen"  # "dolphin" is not Microsoft's phi
    assert vendor_for(None, "phi3") == "microsoft"
    assert vendor_for("something", "mystery-arch") == "unknown"


def test_openai_base_url_adds_v1_only_to_a_bare_server():
    assert openai_base_url("http://127.0.0.1:1234") == "http://127.0.0.1:1234/v1"
    assert openai_base_url("http://127.0.0.1:1234/v1/") == "http://127.0.0.1:1234/v1"
    assert openai_base_url("http://box:8000/openai/v1") == "http://box:8000/openai/v1"
