"""Find what the user already has: GGUF files on disk, model servers on this machine, API keys.

Three sources run concurrently — a folder walk in a worker thread (os.scandir blocks), a
probe of each local server bounded by `probe_timeout`, and a look at the environment — so
an empty machine is done in about one probe timeout. Nothing here raises because one
place was broken: each problem becomes a plain-English note for `byenatos doctor`.

Key values never enter a Discovery: only the *name* of the variable that holds one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from app.kernel.canonical import Capabilities, ModelSpec, Repository, model_id
from app.kernel.config import DiscoverySettings, Paths
from app.kernel.models.gguf_header import GGUFError, GGUFHeader, read_gguf_header
from app.kernel.models.presets import find_preset, presets_by_env

log = logging.getLogger(__name__)

LOCAL_PROVIDER = "local"
MAX_WALK_DEPTH = 6  # HF: snapshots/<rev>/<subdir>/x.gguf; LM Studio: publisher/model/x.gguf
MAX_WALK_ENTRIES = 100_000  # a mistaken gguf_dir of "/" must not scan the whole disk
WORKING_CONTEXT = 8192  # the context a local model is typically run with, for its memory estimate
DEFAULT_CONTEXT = 4096  # when neither the file nor the server says

_SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
_SIDECAR_KINDS = {"adapter": "a LoRA adapter", "mmproj": "a multimodal projector", "imatrix": "an importance matrix"}  # fmt: skip
_EMBEDDING_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "t5encoder", "neo-bert"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class DiscoveredProvider:
    id: str
    kind: str  # a driver kind
    base_url: str | None
    key_env: str | None  # the variable holding the key, never the key
    origin: Literal["discovered", "env"]
    model_count: int = 0


@dataclass(slots=True)
class Discovery:
    providers: list[DiscoveredProvider] = field(default_factory=list)
    models: list[ModelSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Discovery) -> None:
        self.providers += other.providers
        self.models += other.models
        self.notes += other.notes


async def discover(settings: DiscoverySettings, paths: Paths) -> Discovery:
    """Everything found now; cheap enough to run at every start and from `doctor`."""
    work: list[Awaitable[Discovery]] = [_guarded("Scanning for GGUF files", _gguf_source(settings, paths))]
    if settings.probe_local_servers and settings.local_servers:
        work.append(_guarded("Probing local servers", _server_source(settings)))
    if settings.env_keys:
        work.append(_guarded("Reading API keys from the environment", _env_source()))
    result = Discovery()
    for part in await asyncio.gather(*work):  # in a fixed order, whatever finished first
        result.extend(part)
    return result


async def _guarded(what: str, work: Awaitable[Discovery]) -> Discovery:
    try:
        return await work
    except Exception as e:  # a bug or an odd machine must not cost the user the other sources
        log.warning("%s failed", what, exc_info=True)
        return Discovery(notes=[f"{what} failed: {e}"])


async def _gguf_source(settings: DiscoverySettings, paths: Paths) -> Discovery:
    return await asyncio.to_thread(lambda: scan_gguf(gguf_roots(settings, paths)))


async def _server_source(settings: DiscoverySettings) -> Discovery:
    # httpx and its asyncio backend take ~0.3 s to import cold; a worker thread pays for that
    # instead of the event loop, which may already be serving the gateway.
    await asyncio.to_thread(_import_http_client)
    found = Discovery()
    probes = [
        _guarded(f"Probing {name}", probe_server(name, url, settings.probe_timeout))
        for name, url in settings.local_servers.items()
    ]
    for part in await asyncio.gather(*probes):
        found.extend(part)
    return found


def _import_http_client() -> None:
    import httpx  # noqa: F401

    try:  # httpcore loads its asyncio backend at the first request, i.e. on the loop
        import httpcore._backends.anyio  # noqa: F401
    except ImportError:  # a private module of a newer httpcore: only the warm-up is lost
        pass


async def _env_source() -> Discovery:
    return env_providers(os.environ)


# -- vendors -------------------------------------------------------------------------------

# Name/architecture word prefixes → who made the model. Checked word by word, so that
# "Mistral-7B" (architecture "llama") is Mistral's and "dolphin" is not Microsoft's "phi".
_VENDOR_HINTS: tuple[tuple[str, str], ...] = (
    ("mistral", "mistral"), ("mixtral", "mistral"), ("codestral", "mistral"), ("ministral", "mistral"),
    ("devstral", "mistral"), ("magistral", "mistral"), ("llama", "meta"), ("codellama", "meta"),
    ("qwen", "qwen"), ("qwq", "qwen"), ("gemma", "google"), ("t5", "google"), ("phi", "microsoft"),
    ("deepseek", "deepseek"), ("command", "cohere"), ("cohere", "cohere"), ("aya", "cohere"),
    ("starcoder", "bigcode"), ("falcon", "tii"), ("gpt", "openai"), ("granite", "ibm"), ("olmo", "allenai"),
    ("nemotron", "nvidia"), ("minicpm", "openbmb"), ("internlm", "internlm"), ("glm", "zhipu"),
    ("chatglm", "zhipu"), ("exaone", "lg"), ("smollm", "huggingface"), ("stablelm", "stability"),
    ("baichuan", "baichuan"), ("nomic", "nomic"), ("bge", "baai"), ("kimi", "moonshot"), ("grok", "xai"),
    ("jamba", "ai21"), ("bloom", "bigscience"), ("ernie", "baidu"), ("hunyuan", "tencent"),
)  # fmt: skip


def vendor_for(*hints: str | None) -> str:
    """Who made a model, from its name, family or architecture (first hint that says)."""
    for text in hints:
        for word in re.split(r"[^a-z0-9]+", (text or "").lower()):
            for prefix, vendor in _VENDOR_HINTS:
                if word.startswith(prefix):
                    return vendor
    return "unknown"


def _capabilities(arch: str | None, name: str) -> Capabilities:
    """Embedding models are told apart by architecture or name; the rest are taken to chat."""
    if (arch or "") in _EMBEDDING_ARCHS or "embed" in name.lower():
        return Capabilities(chat=False, streaming=False, embeddings=True)
    return Capabilities()


# -- GGUF files ------------------------------------------------------------------------------


def huggingface_hub_cache() -> Path:
    """Where huggingface_hub keeps downloads: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/…"""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def default_gguf_dirs() -> list[Path]:
    """Where other apps put GGUF files: LM Studio (new and old folder) and the HF hub cache."""
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models", huggingface_hub_cache()]


def gguf_roots(settings: DiscoverySettings, paths: Paths) -> list[tuple[Path, bool]]:
    """(folder, explicit) pairs to scan; explicit folders get a note when they are missing."""
    roots = [(Path(d).expanduser(), True) for d in settings.gguf_dirs]
    roots.append((paths.models_dir, False))
    if settings.scan_default_dirs:
        roots += [(d, False) for d in default_gguf_dirs()]
    return roots


# Headers keyed by (real path, size, mtime): rediscovery of unchanged files reads nothing.
_header_cache: dict[tuple[str, int, int], GGUFHeader | GGUFError] = {}
_HEADER_CACHE_LIMIT = 2048


def _read_header_cached(real: str) -> GGUFHeader:
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    cached = _header_cache.get(key)
    if cached is None:
        try:
            cached = read_gguf_header(real)
        except GGUFError as e:
            cached = e
        if len(_header_cache) >= _HEADER_CACHE_LIMIT:
            _header_cache.clear()
        _header_cache[key] = cached
    if isinstance(cached, GGUFError):
        raise cached
    return cached


def scan_gguf(roots: list[tuple[Path, bool]]) -> Discovery:
    """Blocking: walk the folders, read each model's header, build its ModelSpec."""
    found = Discovery()
    seen_files: set[str] = set()
    walker = _Walker(found.notes)
    taken_ids: set[str] = set()
    searched: list[str] = []
    for root, explicit in roots:
        if not root.is_dir():
            if explicit:
                found.notes.append(f"GGUF folder {root} does not exist")
            continue
        searched.append(str(root))
        before = len(found.models)
        for path in walker.gguf_files(root):
            spec = _model_from_file(path, seen_files, taken_ids, found.notes)
            if spec is not None:
                found.models.append(spec)
        if len(found.models) > before:
            n = len(found.models) - before
            found.notes.append(f"{root}: {n} GGUF model{'s' if n != 1 else ''}")
        if walker.entries_left <= 0:
            found.notes.append(
                f"stopped scanning after {MAX_WALK_ENTRIES} entries; add narrower GGUF folders"
            )
            break
    if found.models:
        found.providers.append(
            DiscoveredProvider(LOCAL_PROVIDER, "llamacpp", None, None, "discovered", len(found.models))
        )
    elif searched:
        found.notes.append(f"no GGUF models found in {', '.join(searched)}")
    return found


def _walk_starts(root: Path) -> list[Path]:
    """The HF hub cache keeps usable files under models--<org>--<name>/snapshots/ only."""
    try:
        repos = sorted(p for p in root.iterdir() if p.name.startswith("models--"))
    except OSError:
        return [root]  # the walk reports why
    # blobs/ holds the same bytes under hash names; walking it would only cost time
    return [p / "snapshots" for p in repos if (p / "snapshots").is_dir()] if repos else [root]


class _Walker:
    """Finds *.gguf below folders, sharing one entry budget and one set of visited folders
    across all roots, so a folder reached twice (a link, nested roots) is walked once."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.entries_left = MAX_WALK_ENTRIES
        self._visited: set[tuple[int, int]] = set()  # (device, inode) of real folders

    def gguf_files(self, root: Path) -> Iterator[Path]:
        """Depth-first in name order; follows folder links, but never round a loop."""
        stack = [(start, 0) for start in reversed(_walk_starts(root))]
        while stack and self.entries_left > 0:
            folder, depth = stack.pop()
            entries = self._list(folder)
            self.entries_left -= len(entries)
            subdirs = []
            for entry in entries:
                try:
                    if entry.is_dir():
                        if not entry.name.startswith(".") and depth < MAX_WALK_DEPTH:
                            subdirs.append(Path(entry.path))
                    elif entry.name.lower().endswith(".gguf"):
                        if entry.is_file():
                            yield Path(entry.path)
                        elif entry.is_symlink() and not os.path.exists(entry.path):
                            self.notes.append(f"skipped {entry.path}: broken link")
                except OSError as e:
                    self.notes.append(f"skipped {entry.path}: {e.strerror or e}")
            stack += [(d, depth + 1) for d in reversed(subdirs)]

    def _list(self, folder: Path) -> list[os.DirEntry[str]]:
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in self._visited:
                return []  # a link back up the tree, or a folder reached from two roots
            self._visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except PermissionError:
            self.notes.append(f"cannot read {folder}: permission denied")
        except OSError as e:
            self.notes.append(f"cannot read {folder}: {e.strerror or e}")
        return []


def _model_from_file(path: Path, seen: set[str], taken_ids: set[str], notes: list[str]) -> ModelSpec | None:
    name = path.name
    shard = _SHARD_RE.match(name)
    if shard and int(shard["no"]) != 1:
        return None  # loaded through the first part
    real = os.path.realpath(path)
    if real in seen:
        return None  # the same file through a link, or a second HF snapshot of one blob
    seen.add(real)
    if name.lower().startswith("mmproj"):
        notes.append(f"skipped {path}: a multimodal projector, not a model")
        return None
    total_bytes = 0
    if shard:
        parts = [
            path.with_name(f"{shard['base']}-{i:05d}-of-{shard['total']}.gguf")
            for i in range(1, int(shard["total"]) + 1)
        ]
        present = [p for p in parts if p.is_file()]
        if len(present) < len(parts):
            notes.append(f"skipped {path}: split model with {len(present)} of {len(parts)} parts present")
            return None
        total_bytes = sum(p.stat().st_size for p in parts)
    try:
        header = _read_header_cached(real)
    except GGUFError as e:
        notes.append(f"skipped {path}: {e.reason}")
        return None
    except OSError as e:
        notes.append(f"skipped {path}: {e.strerror or e}")
        return None
    if header.kind in _SIDECAR_KINDS or header.architecture == "clip":
        notes.append(
            f"skipped {path}: {_SIDECAR_KINDS.get(header.kind, 'a multimodal projector')}, not a model"
        )
        return None
    stem = shard["base"] if shard else path.stem
    ident = model_id(LOCAL_PROVIDER, stem)
    n = 2
    while ident in taken_ids:  # same file name in two folders: both stay usable
        ident, n = model_id(LOCAL_PROVIDER, f"{stem}-{n}"), n + 1
    taken_ids.add(ident)
    return ModelSpec(
        id=ident,
        name=ident.split("/", 1)[1],
        provider=LOCAL_PROVIDER,
        vendor=vendor_for(header.name, header.architecture, stem),
        context_window=header.context_length or DEFAULT_CONTEXT,
        local=True,
        memory_bytes=estimate_memory(header, total_bytes or header.file_size),
        repository=Repository.LOCAL,
        path=str(path),
        capabilities=_capabilities(header.architecture, stem),
    )


def estimate_memory(header: GGUFHeader, weights_bytes: int) -> int:
    """Coarse resident size when loaded: the weights, an f16 KV cache at a working context,
    and ~5% for compute buffers. Good enough to rank and budget; the runtime measures exactly."""
    kv = 0
    n_layer, n_embd, n_head = header.block_count, header.embedding_length, header.head_count
    if n_layer and n_embd and n_head:
        n_head_kv = header.head_count_kv or n_head
        ctx = min(header.context_length or WORKING_CONTEXT, WORKING_CONTEXT)
        kv = 2 * n_layer * ctx * (n_embd * n_head_kv // n_head) * 2  # K and V, 2 bytes each
    return weights_bytes + kv + weights_bytes // 20


# -- local servers ---------------------------------------------------------------------------


async def probe_server(name: str, url: str, timeout: float) -> Discovery:
    """Ask one local server for its models; a server that is not there is a note, not an error."""
    import httpx  # here, not at the top: importing the kernel must stay fast

    from app.kernel.loopback import is_loopback

    preset = find_preset(name)
    kind = preset.kind if preset else "openai"  # a server of the user's own: assume the lingua franca
    display = preset.display_name if preset else name
    label = f"{display} at {urlsplit(url).netloc or url}"
    if kind not in ("ollama", "openai"):
        return Discovery(notes=[f"{name}: a {kind} provider is not a server to probe; ignored"])
    base = url.rstrip("/") if kind == "ollama" else openai_base_url(url)
    path = "/api/tags" if kind == "ollama" else "/models"
    shown_path = urlsplit(base + path).path
    client = httpx.AsyncClient(
        base_url=base,
        timeout=timeout,
        # Loading the CA bundle takes ~40 ms of the loop's time per client: only for https.
        verify=base.startswith("https:"),
        trust_env=not is_loopback(base),  # no proxy between us and this machine
    )
    try:
        async with client, asyncio.timeout(timeout):
            response = await client.get(path)
            body = response.content
    except (TimeoutError, httpx.TimeoutException):
        return Discovery(notes=[f"{label}: no answer within {timeout:g} s"])
    except httpx.ConnectError:
        return Discovery(notes=[f"{label}: not running"])
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        return Discovery(notes=[f"{label}: unreachable ({e or type(e).__name__})"])
    if response.status_code >= 400:
        return Discovery(notes=[f"{label}: answered HTTP {response.status_code} to GET {shown_path}"])
    try:
        payload = response.json() if body else None
        entries = payload["models"] if kind == "ollama" else payload["data"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return Discovery(notes=[f"{label}: unexpected answer to GET {shown_path}; is it really {display}?"])
    on_this_machine = is_loopback(base)
    parse = _ollama_model if kind == "ollama" else _openai_model
    models = [m for m in (parse(name, e, on_this_machine) for e in entries if isinstance(e, dict)) if m]
    n = len(models)
    return Discovery(
        providers=[DiscoveredProvider(name, kind, base, None, "discovered", n)],
        models=models,
        notes=[f"{label}: {n} model{'s' if n != 1 else ''}"],
    )


def openai_base_url(url: str) -> str:
    """An OpenAI-compatible base URL: a bare host:port gets the conventional /v1."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def _ollama_model(provider: str, entry: Mapping[str, Any], on_this_machine: bool) -> ModelSpec | None:
    # /api/tags: {"name": "llama3.2:3b", "size": bytes, "details": {"family": "llama", ...}}
    name = entry.get("name") or entry.get("model")
    if not isinstance(name, str) or not name:
        return None
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    size = entry.get("size")
    return ModelSpec(
        id=model_id(provider, name),
        name=name,
        provider=provider,
        vendor=vendor_for(name, details.get("family")),
        local=on_this_machine,
        memory_bytes=size if isinstance(size, int) and size > 0 else None,
        repository=Repository.LOCAL if on_this_machine else Repository.PRIVATE,
        capabilities=_capabilities(details.get("family"), name),
    )


def _openai_model(provider: str, entry: Mapping[str, Any], on_this_machine: bool) -> ModelSpec | None:
    # /v1/models: {"id": ...}; vLLM adds "max_model_len", llama.cpp's server a "meta" block
    name = entry.get("id")
    if not isinstance(name, str) or not name:
        return None
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    context = entry.get("max_model_len") or meta.get("n_ctx_train") or meta.get("n_ctx")
    size = meta.get("size")
    return ModelSpec(
        id=model_id(provider, name),
        name=name,
        provider=provider,
        vendor=vendor_for(name),  # owned_by is mostly "system", "vllm", "llamacpp": no help
        context_window=context if isinstance(context, int) and context > 0 else DEFAULT_CONTEXT,
        local=on_this_machine,
        memory_bytes=size if isinstance(size, int) and size > 0 else None,
        repository=Repository.LOCAL if on_this_machine else Repository.PRIVATE,
        capabilities=_capabilities(None, name),
    )


# -- environment keys -------------------------------------------------------------------------


def env_providers(environ: Mapping[str, str]) -> Discovery:
    """A provider per preset whose key variable is set. Only the variable's name is kept."""
    found = Discovery()
    for var, preset in presets_by_env().items():
        if var not in environ:
            continue
        if not environ[var].strip():
            found.notes.append(f"{var} is set but empty: ignored")
            continue
        base_url = preset.base_url
        if preset.base_url_env:
            base_url = environ.get(preset.base_url_env, "").strip() or None
            if base_url is None:
                found.notes.append(
                    f"{var} found, but {preset.display_name} also needs {preset.base_url_env} (your endpoint): not added"
                )
                continue
        found.providers.append(DiscoveredProvider(preset.id, preset.kind, base_url, var, "env"))
        found.notes.append(f"{var} found: {preset.display_name} provider available")
    return found
