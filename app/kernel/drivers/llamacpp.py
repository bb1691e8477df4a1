"""In-process GGUF models through llama-cpp-python.

Provider options (`ProviderConfig.options`):
    models      GGUF files: paths, or {"path": ..., <Llama kwargs such as chat_format>}
    dirs        folders searched (three levels deep) for *.gguf
    n_ctx       cap on the context size (default 8192): the KV cache grows with it, and
                many GGUFs declare windows (128k) no desktop wants to allocate
    n_threads, n_batch, n_gpu_layers, use_mmap, chat_format    passed to `llama_cpp.Llama`
    preempt     pause a less urgent generation at a token boundary for a more urgent call
                (default true; false: calls are only ordered, each runs to its end)
    preempt_state_mb   KV state kept for paused generations, per model (default 256); a
                generation paused beyond it is re-prefilled from its tokens on resume

Each loaded model lives in its own thread (`_llama_worker.ModelWorker`); requests to one
model run one at a time, the most urgent first: the class of the calling scheduler program
(app.kernel.scheduler: interactive, normal, background), then arrival. A generation of a
less urgent class is paused between two tokens when a more urgent call arrives, and resumes
after it with nothing lost or repeated (docs/dev/preemption.md). `llama_cpp` is imported only
inside worker threads and `health()`, so configuring this provider costs nothing until a
model is used.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.kernel.canonical import (
    Capabilities,
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    EmbeddingResult,
    HealthStatus,
    ModelSpec,
    Repository,
    ToolCall,
    Usage,
    model_id,
)
from app.kernel.drivers._llama_worker import (
    DEFAULT_STATE_BUDGET,
    NORMAL_RANK,
    ModelWorker,
    Preemption,
    WorkerActivity,
    WorkerClosedError,
)
from app.kernel.drivers.base import Driver, ProviderConfig, prompted_tools
from app.kernel.errors import (
    BadRequestError,
    ByenatosError,
    ConfigError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    NotSupportedError,
    UpstreamUnavailableError,
    looks_like_context_overflow,
)
from app.kernel.models.gguf_header import GGUFError, GGUFHeader, read_gguf_header
from app.kernel.scheduler import Hold, current_hold, current_program
from app.kernel.scheduler.service import DEFAULT_STARVATION_S

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_CAP = 8192
_SEARCH_DEPTH = 3
_LLAMA_OPTIONS = (
    "n_threads",
    "n_threads_batch",
    "n_batch",
    "n_gpu_layers",
    "use_mmap",
    "chat_format",
    "seed",
)
_MEAN_POOLING = 1  # llama_cpp.LLAMA_POOLING_TYPE_MEAN, without importing llama_cpp here
# llama-cpp-python chat handlers that decide on their own whether to call a tool
_AUTO_TOOL_FORMATS = {"chatml-function-calling", "functionary", "functionary-v1", "functionary-v2"}
_SHARD_RE = re.compile(r"-(\d{5})-of-\d{5}$")  # split GGUFs: only the first shard is a model


def _kv_cache_bytes(header: GGUFHeader, n_ctx: int) -> int:
    """f16 K and V for every layer and position: llama.cpp's default cache layout."""
    n_layer, n_embd, n_head = header.block_count, header.embedding_length, header.head_count
    if not (n_layer and n_embd and n_head):
        return 0  # per-layer head counts (arrays) or odd architectures: no estimate
    head_dim = n_embd // n_head
    key = _int(header.arch_value("attention.key_length")) or head_dim
    value = _int(header.arch_value("attention.value_length")) or head_dim
    return n_ctx * n_layer * (header.head_count_kv or n_head) * (key + value) * 2


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ── the driver ────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _LocalFile:
    name: str
    path: Path
    overrides: dict[str, Any]


class LlamaCppDriver(Driver):
    kind = "llamacpp"
    manages_memory = True
    # A generation pauses at a token boundary for a more urgent call (Driver.preemptible); the
    # `preempt` option turns it off for one provider (this instance's attribute then says so).
    preemptible = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        _check_options(config)
        options = config.options
        budget = options.get("preempt_state_mb")
        self._preemption = Preemption(
            enabled=options.get("preempt", True) is not False,
            state_budget=DEFAULT_STATE_BUDGET if budget is None else int(budget * 2**20),
            starvation_s=DEFAULT_STARVATION_S,
        )
        self.preemptible = self._preemption.enabled
        self._workers: dict[str, ModelWorker] = {}  # by model name
        # Embeddings need a context created with embedding=True: a second instance of the
        # model (the weights are mmapped, so their pages are shared with the first)
        self._embedders: dict[str, ModelWorker] = {}
        self._load_lock = asyncio.Lock()
        self._headers: dict[tuple[str, int, int], GGUFHeader] = {}  # (path, size, mtime) → header

    # ── discovery ──────────────────────────────────────────────────────────

    async def list_models(self) -> list[ModelSpec]:
        return await asyncio.to_thread(self._scan)

    def _scan(self) -> list[ModelSpec]:
        specs = []
        for local in self._local_files():
            try:
                header = self._header(local.path)
            except (OSError, GGUFError) as exc:
                log.warning("skipping %s: %s", local.path, exc)
                continue
            if _is_model(header):
                specs.append(self._spec(local, header))
        return specs

    def _local_files(self) -> list[_LocalFile]:
        """Configured files first, then what the folders hold; one name per file."""
        found: list[tuple[Path, dict[str, Any]]] = []
        for entry in self.config.options.get("models") or []:
            if isinstance(entry, dict):
                overrides = {k: v for k, v in entry.items() if k != "path"}
                found.append((Path(entry["path"]).expanduser(), overrides))
            else:
                found.append((Path(entry).expanduser(), {}))
        for folder in self.config.options.get("dirs") or []:
            found += [(p, {}) for p in _gguf_files(Path(folder).expanduser())]

        files: list[_LocalFile] = []
        seen_paths: set[Path] = set()
        names: set[str] = set()
        for path, overrides in found:
            real = path.resolve()
            if real in seen_paths or not _is_model_file(path):
                continue
            seen_paths.add(real)
            name, n = path.stem, 2
            while name in names:  # same file name in two folders: keep both, distinctly
                name, n = f"{path.stem}-{n}", n + 1
            names.add(name)
            files.append(_LocalFile(name, path, overrides))
        return files

    def _header(self, path: Path) -> GGUFHeader:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._headers:
            self._headers[key] = read_gguf_header(path)
        return self._headers[key]

    def _context_size(self, header: GGUFHeader, overrides: dict[str, Any]) -> int:
        cap = int(overrides.get("n_ctx") or self.config.options.get("n_ctx") or DEFAULT_CONTEXT_CAP)
        return min(header.context_length or cap, cap)

    def _spec(self, local: _LocalFile, header: GGUFHeader) -> ModelSpec:
        n_ctx = self._context_size(header, local.overrides)
        chat_format = local.overrides.get("chat_format") or self.config.options.get("chat_format")
        return ModelSpec(
            id=model_id(self.provider_id, local.name),
            name=local.name,
            provider=self.provider_id,
            context_window=n_ctx,
            capabilities=Capabilities(
                tools=chat_format in _AUTO_TOOL_FORMATS,
                # any other template cannot choose a tool itself: the prompt-based fallback does
                prompted_tools=prompted_tools(self.config, chat_format in _AUTO_TOOL_FORMATS,
                                              local.overrides.get("tool_calls")),
                json_mode=True,  # llama-cpp-python constrains output with a JSON grammar
                # any GGUF embeds; one that declares a pooling type was made for it
                embeddings=header.arch_value("pooling_type") is not None,
            ),
            local=True,
            memory_bytes=header.file_size + _kv_cache_bytes(header, n_ctx),
            repository=Repository.LOCAL,
            path=str(local.path),
        )

    # ── load / unload ──────────────────────────────────────────────────────

    async def load(self, model: ModelSpec) -> None:
        await self._worker(model)

    async def unload(self, model: ModelSpec) -> None:
        """Free the model once its queued requests are done; RSS drops when this returns.

        Requests already running finish first (the socket cancels them itself when a
        swap must not wait); new requests for the model load it again.
        """
        async with self._load_lock:  # a load in progress completes first, then goes
            workers = [
                w for w in (self._workers.pop(model.name, None), self._embedders.pop(model.name, None)) if w
            ]
        await asyncio.gather(*(w.close() for w in workers))

    async def loaded_models(self) -> list[str]:
        return list(dict.fromkeys([*self._workers, *self._embedders]))

    def activity(self, model: ModelSpec) -> WorkerActivity | None:
        """Whether a loaded model is serving (the socket never evicts a busy one); None if not loaded."""
        worker = self._workers.get(model.name)
        return worker.activity() if worker else None

    async def aclose(self) -> None:
        """Unload every model (after the requests still running on them)."""
        workers = [*self._workers.values(), *self._embedders.values()]
        self._workers, self._embedders = {}, {}
        await asyncio.gather(*(w.close() for w in workers))

    async def _worker(self, model: ModelSpec, *, embedding: bool = False) -> ModelWorker:
        table = self._embedders if embedding else self._workers
        if (worker := table.get(model.name)) is not None:
            return worker
        async with self._load_lock:  # one load at a time: two requests must not load twice
            if (worker := table.get(model.name)) is not None:
                return worker
            local, header = await asyncio.to_thread(self._locate, model)
            kwargs = {k: v for k, v in self.config.options.items() if k in _LLAMA_OPTIONS}
            kwargs |= {k: v for k, v in local.overrides.items() if k in _LLAMA_OPTIONS}
            kwargs["n_ctx"] = self._context_size(header, local.overrides)
            if embedding:
                # a whole text in one batch; mean pooling unless the model names its own
                kwargs |= {"embedding": True, "n_batch": kwargs["n_ctx"], "n_ubatch": kwargs["n_ctx"]}
                if header.arch_value("pooling_type") is None:
                    kwargs["pooling_type"] = _MEAN_POOLING
            preemption = Preemption(enabled=False) if embedding else self._preemption
            worker = ModelWorker(model.name, str(local.path), kwargs, preemption)
            try:
                await worker.start()
            except Exception as exc:
                raise _typed(exc, model, during="load") from exc
            table[model.name] = worker
            return worker

    def _locate(self, model: ModelSpec) -> tuple[_LocalFile, GGUFHeader]:
        """The file behind a spec, checked to be a readable GGUF before llama.cpp sees it."""
        if model.path:
            local = next((f for f in self._local_files() if f.path == Path(model.path)), None)
            local = local or _LocalFile(model.name, Path(model.path), {})
        else:
            files = self._local_files()
            local = next((f for f in files if f.name == model.name), None)
            if local is None:
                raise ModelNotFoundError(
                    f"no GGUF named {model.name!r}",
                    available=[f.name for f in files],
                    provider=self.provider_id,
                    model=model.name,
                )
        if not local.path.is_file():
            raise NotFoundError(
                f"model file not found: {local.path}", provider=self.provider_id, model=model.name
            )
        try:
            header = self._header(local.path)
        except (OSError, GGUFError) as exc:
            reason = exc.reason if isinstance(exc, GGUFError) else exc.strerror or str(exc)
            raise BadRequestError(
                f"{local.path} is not a usable GGUF model: {reason}",
                provider=self.provider_id,
                model=model.name,
            ) from None
        if not _is_model(header):
            raise BadRequestError(
                f"{local.path} is a GGUF {header.kind}, not a model",
                provider=self.provider_id,
                model=model.name,
            )
        return local, header

    # ── chat ───────────────────────────────────────────────────────────────

    async def chat(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        rank = self._urgency()
        for attempt in range(2):
            worker = await self._worker(model)
            try:
                # no await between looking the worker up and submitting to it: an unload
                # cannot slip in; if one already did, the retry loads the model again
                raw = await worker.complete(_call_kwargs(request, model, worker.chat_format), rank=rank)
                return _response(raw, model)
            except WorkerClosedError:
                if attempt:
                    raise UpstreamUnavailableError(
                        "model was unloaded while the request waited",
                        provider=self.provider_id,
                        model=model.name,
                    ) from None
            except Exception as exc:
                raise _typed(exc, model) from exc
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[ChatChunk]:
        rank = self._urgency()
        worker = await self._worker(model)
        kwargs = _call_kwargs(request, model, worker.chat_format)
        chunks = worker.stream(kwargs, rank=rank)
        try:
            async for raw in chunks:
                if (chunk := _chunk(raw, model)) is not None:
                    yield chunk
        except WorkerClosedError:
            raise UpstreamUnavailableError(
                "model was unloaded while the request waited", provider=self.provider_id, model=model.name
            ) from None
        except Exception as exc:
            raise _typed(exc, model) from exc
        finally:
            await chunks.aclose()  # stops generation now, not when the generator is collected

    async def embed(self, texts: list[str], model: ModelSpec) -> EmbeddingResult:
        """One vector per text; a text longer than the context window is cut to fit it."""
        if not texts:
            return EmbeddingResult(model=model.name, vectors=[])
        if not all(isinstance(t, str) and t for t in texts):
            raise BadRequestError("every text to embed must be a non-empty string", model=model.name)
        rank = self._urgency(lends=False)  # embeddings run on their own instance, and are not paused
        worker = await self._worker(model, embedding=True)
        try:
            raw = await worker.call(lambda llama: llama.create_embedding(texts), rank=rank)
        except Exception as exc:
            raise _typed(exc, model) from exc
        items = sorted(raw["data"], key=lambda item: item["index"])
        return EmbeddingResult(
            model=model.name,
            vectors=[item["embedding"] for item in items],
            usage=Usage.of(raw.get("usage", {}).get("prompt_tokens", 0), 0),
        )

    def _urgency(self, *, lends: bool = True) -> int:
        """The calling program's rank on the model (0 interactive, 1 normal, 2 background), and,
        on a deployment the router holds a slot of, consent to lend that slot (see `_lend`)."""
        program = current_program.get()
        hold = current_hold.get()
        if lends and self.preemptible and hold is not None and (program is None or hold.program is program):
            if hold.preempt_requested:  # a more urgent call queued before this one reached us
                _lend_soon(hold)
            else:
                hold.on_preempt = lambda: _lend_soon(hold)
        return NORMAL_RANK if program is None else program.class_.rank

    async def health(self) -> HealthStatus:
        try:
            llama_cpp = await asyncio.to_thread(importlib.import_module, "llama_cpp")
        except Exception as exc:  # ImportError, or a native library that will not load
            return HealthStatus(ok=False, detail=f"llama-cpp-python unavailable: {exc}")
        version = getattr(llama_cpp, "__version__", "?")
        return HealthStatus(
            ok=True, detail=f"llama-cpp-python {version}; {len(self._workers)} model(s) loaded"
        )


def _lend_soon(hold: Hold) -> None:
    """A more urgent call waits for the slot this call holds, with every slot busy: let the
    deployment hand it over (`Hold.lend`), on the next loop turn (this runs inside the queue's
    push). This call's generation is then paused by the worker when the urgent call's job
    reaches it, resumes when that is done, and does not queue for a slot again."""
    asyncio.get_running_loop().call_soon(_lend, hold)


def _lend(hold: Hold) -> None:
    lend = getattr(hold, "lend", None)  # set by the deployment while the slot is held
    if lend is not None:
        lend()


# ── helpers: files ────────────────────────────────────────────────────────────


def _check_options(config: ProviderConfig) -> None:
    """Settings mistakes surface when the provider is configured, not at the first request."""
    options = config.options

    def fail(why: str) -> None:
        raise ConfigError(f"llamacpp provider {config.id!r}: {why}", provider=config.id)

    if not isinstance(options.get("models") or [], list):
        fail("models must be a list of GGUF paths")
    for entry in options.get("models") or []:
        if isinstance(entry, dict) and not isinstance(entry.get("path"), str):
            fail(f"a models entry needs a 'path': {entry!r}")
        elif not isinstance(entry, dict | str | os.PathLike):
            fail(f"models entries are paths or {{'path': ...}} dicts, not {entry!r}")
    if not isinstance(options.get("dirs") or [], list):
        fail("dirs must be a list of folders")
    for entry in [options, *(e for e in options.get("models") or [] if isinstance(e, dict))]:
        n_ctx = entry.get("n_ctx")
        if n_ctx is not None and (not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 16):
            fail(f"n_ctx must be a whole number of tokens (16 or more), not {n_ctx!r}")
    if not isinstance(options.get("preempt", True), bool):
        fail(f"preempt must be true or false, not {options['preempt']!r}")
    budget = options.get("preempt_state_mb")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                               or not math.isfinite(budget) or budget < 0):
        fail(f"preempt_state_mb must be a number of megabytes (0 or more), not {budget!r}")


def _gguf_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        log.warning("model folder %s does not exist", folder)
        return []
    found = []
    base_depth = len(folder.parts)
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and len(Path(root).parts) - base_depth < _SEARCH_DEPTH
        )
        found += [Path(root) / f for f in sorted(files) if f.lower().endswith(".gguf")]
    return found


def _is_model(header: GGUFHeader) -> bool:
    """LoRA adapters, vision projectors and importance matrices are GGUFs too."""
    return header.kind == "model" and header.architecture not in (None, "clip")


def _is_model_file(path: Path) -> bool:
    """Vision projectors and the later shards of split files are GGUFs, but not models."""
    if "mmproj" in path.name.lower():
        return False
    shard = _SHARD_RE.search(path.stem)
    return shard is None or int(shard.group(1)) == 1


# ── helpers: canonical ⇄ llama-cpp-python ─────────────────────────────────────

_EXTRA_SAMPLING = ("presence_penalty", "frequency_penalty", "top_k", "min_p", "repeat_penalty", "typical_p")


def _call_kwargs(request: ChatRequest, model: ModelSpec, chat_format: str | None) -> dict[str, Any]:
    """A canonical request as `Llama.create_chat_completion` keyword arguments."""
    if request.n and request.n > 1:
        raise NotSupportedError("llama.cpp returns one choice per request (n > 1)", model=model.name)
    kwargs: dict[str, Any] = {
        "messages": _messages(request.messages, model, chat_format),
        "max_tokens": request.output_limit(),
        "model": model.name,
    }
    for name in ("temperature", "top_p", "stop", "seed"):
        if (value := getattr(request, name)) is not None:
            kwargs[name] = value
    extra = request.model_extra or {}
    kwargs |= {k: extra[k] for k in _EXTRA_SAMPLING if extra.get(k) is not None}
    if (fmt := request.response_format) and fmt.get("type") != "text":
        if fmt.get("type") == "json_schema":  # llama-cpp-python knows json_object (+ schema)
            schema = (fmt.get("json_schema") or {}).get("schema")
            fmt = {"type": "json_object", **({"schema": schema} if schema else {})}
        kwargs["response_format"] = fmt
    if request.tools and request.tool_choice != "none":
        kwargs |= _tool_kwargs(request, model, chat_format)
    return kwargs


def _tool_kwargs(request: ChatRequest, model: ModelSpec, chat_format: str | None) -> dict[str, Any]:
    tools, choice = request.tools or [], request.tool_choice
    if choice == "required" and len(tools) == 1:
        choice = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
    if isinstance(choice, dict):
        # A named tool works with every chat template: a JSON-schema grammar forces the call.
        return {"tools": tools, "tool_choice": choice}
    if chat_format in _AUTO_TOOL_FORMATS:
        # OpenAI's default with tools is "auto"; llama-cpp-python's handlers take no tool_choice
        # as "no tools" (chatml-function-calling renders none) and know no "required" (it
        # asserts "auto"): the nearest they offer is the model choosing.
        return {"tools": tools, "tool_choice": "auto"}
    raise NotSupportedError(
        f"chat format {chat_format!r} cannot choose tools by itself; name one tool in tool_choice, "
        f"or configure chat_format='chatml-function-calling' for this model",
        model=model.name,
    )


def _messages(messages: list[ChatMessage], model: ModelSpec, chat_format: str | None) -> list[dict[str, Any]]:
    out = [_message(m, model) for m in messages]
    if chat_format == "chatml-function-calling":
        # Its template renders system, user and assistant turns only: a tool result would
        # vanish from the prompt. It goes in as a user turn, named the way the template
        # writes the call ("functions.<name>:").
        names = {c.id: c.function.name for m in messages for c in m.tool_calls or []}
        for i, m in enumerate(messages):
            if m.role in ("tool", "function"):
                name = m.name or names.get(m.tool_call_id) or "tool"
                out[i] = {"role": "user", "content": f"functions.{name} returned:\n{m.text()}"}
    return out


def _message(message: ChatMessage, model: ModelSpec) -> dict[str, Any]:
    if isinstance(message.content, list) and any(p.get("type") != "text" for p in message.content):
        raise NotSupportedError("this GGUF model takes text only (no images or audio)", model=model.name)
    out: dict[str, Any] = {
        # chat templates know system/user/assistant/tool; "developer" is OpenAI's newer system
        "role": "system" if message.role == "developer" else message.role,
        "content": message.text(),  # templates concatenate strings: None would break them
    }
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [c.model_dump(exclude_none=True, exclude={"index"}) for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _response(raw: dict[str, Any], model: ModelSpec) -> ChatResponse:
    choices = []
    for c in raw.get("choices") or []:
        msg = c.get("message") or {}
        tool_calls = [ToolCall.model_validate(t) for t in msg.get("tool_calls") or []] or None
        choices.append(
            Choice(
                index=c.get("index", 0),
                message=ChatMessage(role="assistant", content=msg.get("content"), tool_calls=tool_calls),
                finish_reason=c.get("finish_reason"),
            )
        )
    usage = raw.get("usage") or {}
    return ChatResponse(
        id=raw.get("id") or f"chatcmpl-{model.name}",
        created=raw.get("created") or 0,
        model=model.name,
        choices=choices,
        usage=Usage.of(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
    )


def _chunk(raw: dict[str, Any], model: ModelSpec) -> ChatChunk | None:
    """One stream chunk; None for llama-cpp-python's occasional empty ones."""
    choices = []
    for c in raw.get("choices") or []:
        delta = c.get("delta") or {}
        tool_calls = [ToolCall.model_validate(t) for t in delta.get("tool_calls") or []] or None
        if not (delta.get("role") or delta.get("content") or tool_calls or c.get("finish_reason")):
            continue
        choices.append(
            ChunkChoice(
                index=c.get("index", 0),
                delta=Delta(role=delta.get("role"), content=delta.get("content"), tool_calls=tool_calls),
                finish_reason=c.get("finish_reason"),
            )
        )
    usage = raw.get("usage")
    if not choices and not usage:
        return None
    return ChatChunk(
        id=raw.get("id") or f"chatcmpl-{model.name}",
        created=raw.get("created") or 0,
        model=model.name,
        choices=choices,
        usage=Usage.of(usage["prompt_tokens"], usage["completion_tokens"]) if usage else None,
    )


def _typed(exc: BaseException, model: ModelSpec, *, during: str = "request") -> ByenatosError:
    """llama-cpp-python raises ValueError/RuntimeError (and jinja2 errors from templates)."""
    if isinstance(exc, ByenatosError):
        return exc
    kw = {"provider": model.provider, "model": model.name}
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ValueError) and looks_like_context_overflow(message):
        return ContextWindowExceededError(message, **kw)
    if during == "load":
        return BadRequestError(f"llama.cpp could not load {model.path or model.name}: {message}", **kw)
    if isinstance(exc, ValueError | TypeError | KeyError) or type(exc).__module__.startswith("jinja2"):
        return BadRequestError(f"llama.cpp rejected the request: {message}", **kw)
    return UpstreamUnavailableError(f"llama.cpp failed: {message}", **kw)
