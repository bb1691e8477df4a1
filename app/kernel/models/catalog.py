"""Facts about cloud models (window, output limit, prices, capabilities) from litellm's model map.

litellm ships its price/context map as a JSON file inside its package. We read that file
directly instead of importing litellm: `import litellm` costs seconds, the file costs tens
of milliseconds, and it is parsed only on the first lookup (then cached for the process).
Where litellm is not installed the catalog is simply empty (`catalog_status()` says why).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.kernel.canonical import Capabilities, ModelSpec, model_id

log = logging.getLogger(__name__)

MAP_FILE = "model_prices_and_context_window_backup.json"

# Our provider ids / kinds that litellm spells differently.
_PROVIDER_ALIASES = {
    "google": "gemini",
    "vertex": "vertex_ai",
    "together": "together_ai",
    "fireworks": "fireworks_ai",
    "kimi": "moonshot",
    "grok": "xai",
}

# When a bare name ("gpt-4o") is listed by several providers, the maker's own listing wins:
# resellers (azure, openrouter, bedrock…) often differ in window or price.
_FIRST_PARTY = ("openai", "anthropic", "gemini", "mistral", "deepseek", "xai", "cohere", "moonshot", "groq")

# Name fragment → who made the model (the vendor, not the reseller that serves it).
_VENDOR_HINTS: tuple[tuple[str, str], ...] = (
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("davinci", "openai"),
    ("text-embedding", "openai"),
    ("claude", "anthropic"),
    ("gemini", "google"),
    ("gemma", "google"),
    ("palm", "google"),
    ("llama", "meta"),
    ("mistral", "mistral"),
    ("mixtral", "mistral"),
    ("codestral", "mistral"),
    ("ministral", "mistral"),
    ("magistral", "mistral"),
    ("devstral", "mistral"),
    ("pixtral", "mistral"),
    ("deepseek", "deepseek"),
    ("qwen", "alibaba"),
    ("qwq", "alibaba"),
    ("command", "cohere"),
    ("embed-", "cohere"),
    ("grok", "xai"),
    ("kimi", "moonshot"),
    ("moonshot", "moonshot"),
    ("glm", "zhipu"),
    ("phi-", "microsoft"),
    ("nova", "amazon"),
    ("titan", "amazon"),
    ("jamba", "ai21"),
    ("minimax", "minimax"),
)
_VENDOR_ROUTE = {"google": "gemini"}  # the maker's own litellm route, where it differs from its name
_PROVIDER_VENDOR = {
    "gemini": "google",
    "vertex_ai": "google",
    "openai": "openai",
    "anthropic": "anthropic",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "xai": "xai",
    "moonshot": "moonshot",
}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One model as litellm's map describes it."""

    key: str  # the map's key: "gpt-4o", "gemini/gemini-2.5-pro"
    name: str  # without the provider prefix: "gemini-2.5-pro"
    litellm_provider: str  # "openai", "gemini", "vertex_ai"…
    mode: str  # "chat", "embedding", "completion", "image_generation"…
    context_window: int | None
    max_output_tokens: int | None
    input_cost_per_token: float
    output_cost_per_token: float
    supports_tools: bool
    supports_vision: bool
    supports_json: bool
    supports_reasoning: bool
    deprecation_date: str | None
    vendor: str
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def is_embedding(self) -> bool:
        return self.mode == "embedding"

    @property
    def deprecated(self) -> bool:
        return bool(self.deprecation_date) and self.deprecation_date < dt.date.today().isoformat()

    def capabilities(self) -> Capabilities:
        chat = self.mode in ("chat", "completion", "responses")
        return Capabilities(
            chat=chat,
            streaming=chat,
            tools=self.supports_tools,
            vision=self.supports_vision,
            json_mode=self.supports_json,
            embeddings=self.is_embedding,
        )

    @property
    def quality(self) -> float:
        return quality_from_price(self.output_cost_per_token, reasoning=self.supports_reasoning)


def quality_from_price(output_cost_per_token: float, *, reasoning: bool = False) -> float:
    """A coarse 0..1 quality score for the router, derived from the output price tier.

    Vendors price their flagships high and their "mini/flash/lite" models low, so within
    the cloud market price is a fair proxy for capability. The scale is logarithmic:
    $0.10 per million output tokens → 0.40, $1 → 0.55, $10 → 0.70, $60 → 0.82; models that
    reason before answering get +0.05. Unknown or free prices say nothing: 0.5 (the default).
    """
    if output_cost_per_token <= 0:
        return 0.5
    per_million = output_cost_per_token * 1e6
    score = 0.55 + 0.15 * math.log10(per_million) + (0.05 if reasoning else 0.0)
    return round(min(0.9, max(0.3, score)), 3)


def canonical_provider(provider: str | None) -> str | None:
    if not provider:
        return None
    provider = provider.lower()
    return _PROVIDER_ALIASES.get(provider, provider)


def guess_vendor(name: str, litellm_provider: str | None = None) -> str:
    base = name.lower().rsplit("/", 1)[-1]
    for fragment, vendor in _VENDOR_HINTS:
        if base.startswith(fragment) or f"-{fragment}" in base or f".{fragment}" in base:
            return vendor
    return _PROVIDER_VENDOR.get(_family(litellm_provider or ""), "unknown")


def _family(litellm_provider: str) -> str:
    # "vertex_ai-language-models", "fireworks_ai-embedding-models" are sub-lists of one provider
    return litellm_provider.split("-", 1)[0] if litellm_provider.endswith("-models") else litellm_provider


# -- loading ---------------------------------------------------------------------------------


class _Catalog:
    """The parsed map, indexed by key and by bare name; entries are built on first use only."""

    def __init__(self, raw: dict[str, Any], source: str | None, problem: str | None) -> None:
        self.source = source
        self.problem = problem
        self.load_ms = 0.0
        self.keys: dict[str, str] = {}  # lower-case key → the map's key
        self.by_name: dict[str, list[str]] = {}  # lower-case bare name (and its last segment) → keys
        self.providers: set[str] = set()
        self._raw = raw
        self._entries: dict[str, CatalogEntry | None] = {}
        for key, value in raw.items():
            if not _usable(key, value):
                continue
            lower = key.lower()
            self.keys[lower] = key
            name = _bare_name(key, value["litellm_provider"]).lower()
            self.by_name.setdefault(name, []).append(lower)
            if "/" in name:  # "groq/openai/gpt-oss-120b" is also found as "gpt-oss-120b"
                self.by_name.setdefault(name.rsplit("/", 1)[1], []).append(lower)
            self.providers.add(_family(value["litellm_provider"]))

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, lower_key: str) -> CatalogEntry | None:
        if lower_key not in self.keys:
            return None
        if lower_key not in self._entries:
            key = self.keys[lower_key]
            self._entries[lower_key] = _entry(key, self._raw[key])
        return self._entries[lower_key]

    def all(self) -> list[CatalogEntry]:
        return [e for k in self.keys if (e := self.get(k)) is not None]


_lock = threading.Lock()
_loaded: _Catalog | None = None


def map_path() -> Path | None:
    """Where litellm's bundled map lives, found without importing litellm."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / MAP_FILE
        if candidate.is_file():
            return candidate
    return None


def _catalog() -> _Catalog:
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
    return _loaded


def _load() -> _Catalog:
    started = time.perf_counter()
    path = map_path()
    if path is None:
        problem = f"litellm is not installed (or ships no {MAP_FILE}); the model catalog is empty"
        log.warning(problem)
        return _Catalog({}, None, problem)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problem = f"cannot read litellm's model map {path}: {e}; the model catalog is empty"
        log.warning(problem)
        return _Catalog({}, str(path), problem)
    cat = _Catalog(data if isinstance(data, dict) else {}, str(path), None)
    cat.load_ms = (time.perf_counter() - started) * 1000
    log.debug("model catalog: %d entries from %s in %.0f ms", len(cat), path, cat.load_ms)
    return cat


def _int(value: Any) -> int | None:
    return (
        int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None
    )


def _float(value: Any) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0.0
    )


def _usable(key: str, raw: Any) -> bool:
    return (
        isinstance(raw, dict)
        and key != "sample_spec"  # the map's own schema description
        and isinstance(raw.get("litellm_provider"), str)
        and isinstance(raw.get("mode"), str)
    )


def _bare_name(key: str, provider: str) -> str:
    # the map prefixes most keys with the litellm route ("gemini/…", "vertex_ai/…")
    prefix, _, rest = key.partition("/")
    return rest if rest and prefix in (provider, _family(provider)) else key


def _entry(key: str, raw: dict[str, Any]) -> CatalogEntry:
    provider: str = raw["litellm_provider"]
    mode: str = raw["mode"]
    name = _bare_name(key, provider)
    window = _int(raw.get("max_input_tokens")) or _int(raw.get("max_tokens"))
    return CatalogEntry(
        key=key,
        name=name,
        litellm_provider=provider,
        mode=mode,
        context_window=window,
        max_output_tokens=_int(raw.get("max_output_tokens")),
        input_cost_per_token=_float(raw.get("input_cost_per_token")),
        output_cost_per_token=_float(raw.get("output_cost_per_token")),
        supports_tools=bool(raw.get("supports_function_calling")),
        supports_vision=bool(raw.get("supports_vision")),
        supports_json=bool(raw.get("supports_response_schema")),
        supports_reasoning=bool(raw.get("supports_reasoning")),
        deprecation_date=raw.get("deprecation_date")
        if isinstance(raw.get("deprecation_date"), str)
        else None,
        vendor=guess_vendor(name, provider),
        raw=raw,
    )


# -- public API ------------------------------------------------------------------------------


def catalog_status() -> tuple[bool, str]:
    """(available, a sentence for `byenatos doctor`)."""
    cat = _catalog()
    if cat.problem:
        return False, cat.problem
    return True, f"{len(cat)} models from {cat.source} (loaded in {cat.load_ms:.0f} ms)"


def lookup(name: str, provider_kind: str | None = None) -> CatalogEntry | None:
    """The catalog's facts for a model name, bare ("gpt-4o") or routed ("gemini/gemini-2.5-pro",
    "openrouter/anthropic/claude-sonnet-4-5"). `provider_kind` (a litellm provider or one of our
    provider ids) breaks ties when several providers list the same name. Unknown → None.
    """
    name = name.strip().lower() if name else ""
    if not name:
        return None
    cat = _catalog()
    if not len(cat):
        return None
    # OpenRouter and friends write versions with dots where the map has dashes:
    # "anthropic/claude-sonnet-4.5" is the map's "claude-sonnet-4-5"
    variants = [name, name.replace(".", "-")] if "." in name else [name]
    parts_of = [v.split("/") for v in variants]
    # Routes to try first: the caller's provider, the name's own prefix ("gemini/…"), and
    # the maker's own route ("gemini-2.5-pro" is Google's, served first-hand by "gemini").
    hints = [canonical_provider(provider_kind), parts_of[0][0] if len(parts_of[0]) > 1 else None]
    hints.append(canonical_provider(_VENDOR_ROUTE.get(guess_vendor(name), guess_vendor(name))))
    routes = list(dict.fromkeys(h for h in hints if h and h != "unknown"))
    # The whole name, then with routing prefixes peeled off one by one:
    # "openrouter/anthropic/claude-x" → "anthropic/claude-x" → "claude-x".
    # Exact keys first at every depth, so the maker's own listing ("claude-x", keyed bare)
    # beats a reseller that happens to list the routed name ("perplexity/anthropic/claude-x").
    for parts in parts_of:
        for i in range(len(parts)):
            candidate = "/".join(parts[i:])
            for route in routes:
                if hit := cat.get(f"{route}/{candidate}"):
                    return hit
            if hit := cat.get(candidate):
                return hit
    for parts in parts_of:
        for i in range(len(parts)):
            peeled = [parts[i - 1]] if i else []  # "anthropic" in "openrouter/anthropic/…"
            if hit := _best_by_name(cat, cat.by_name.get("/".join(parts[i:]), []), [*routes, *peeled]):
                return hit
    return None


def _best_by_name(cat: _Catalog, keys: list[str], hints: list[str]) -> CatalogEntry | None:
    """Of several routes listing one bare name: a hinted provider's, else the maker's own."""
    entries = [e for k in keys if (e := cat.get(k)) is not None]
    if not entries:
        return None

    def rank(e: CatalogEntry) -> tuple[int, int]:
        family = _family(e.litellm_provider)
        if family in hints:
            return (0, hints.index(family))
        if family in _FIRST_PARTY:
            return (1, _FIRST_PARTY.index(family))
        return (2, 0)

    return min(entries, key=rank)


def known_models(
    litellm_provider: str, *, modes: tuple[str, ...] = ("chat", "embedding"), include_deprecated: bool = False
) -> list[CatalogEntry]:
    """Every model the map lists for a provider (e.g. all "gemini" chat and embedding models),
    so a provider with a key but no listing endpoint still shows something to pick from.
    One entry per name, sorted by name; models past their deprecation date are left out."""
    provider = canonical_provider(litellm_provider)
    cat = _catalog()
    by_name: dict[str, CatalogEntry] = {}
    for lower_key, key in cat.keys.items():
        raw = cat._raw[key]
        if _family(raw["litellm_provider"]) != provider or raw["mode"] not in modes:
            continue
        entry = cat.get(lower_key)
        if entry is None or (entry.deprecated and not include_deprecated):
            continue
        # the routed key ("gemini/x") and a bare duplicate ("x") describe one model
        if entry.name not in by_name or "/" in entry.key:
            by_name[entry.name] = entry
    return sorted(by_name.values(), key=lambda e: e.name)


def spec_from_entry(entry: CatalogEntry, provider_id: str) -> ModelSpec:
    """A ModelSpec for a catalog model as served by one of our providers."""
    return enrich(
        ModelSpec(id=model_id(provider_id, entry.name), name=entry.name, provider=provider_id), entry
    )


def known_specs(provider_id: str, litellm_provider: str) -> list[ModelSpec]:
    """known_models() as specs of provider `provider_id` (a provider that cannot list its models)."""
    return [spec_from_entry(e, provider_id) for e in known_models(litellm_provider)]


_DEFAULTS = ModelSpec(id="_/_", name="_", provider="_")


def enrich(spec: ModelSpec, entry: CatalogEntry | None = None) -> ModelSpec:
    """A copy of `spec` with catalog facts filled in wherever the spec still holds a default.

    Values the spec states (a window other than the default, a price, a capability flag set
    explicitly) are kept. Local models are returned unchanged: their window is the runtime's
    n_ctx and they cost nothing, whatever the cloud listing of the same name says.
    """
    if spec.local:
        return spec.model_copy()
    entry = entry or lookup(spec.name, spec.provider)
    if entry is None:
        return spec.model_copy()
    update: dict[str, Any] = {}
    if spec.context_window == _DEFAULTS.context_window and entry.context_window:
        update["context_window"] = entry.context_window
    if spec.max_output_tokens is None and entry.max_output_tokens:
        update["max_output_tokens"] = entry.max_output_tokens
    if spec.input_cost_per_token == 0.0 and entry.input_cost_per_token:
        update["input_cost_per_token"] = entry.input_cost_per_token
    if spec.output_cost_per_token == 0.0 and entry.output_cost_per_token:
        update["output_cost_per_token"] = entry.output_cost_per_token
    if spec.vendor == _DEFAULTS.vendor and entry.vendor != "unknown":
        update["vendor"] = entry.vendor
    if spec.quality == _DEFAULTS.quality:
        update["quality"] = entry.quality
    # capability flags: only those nobody set explicitly take the catalog's word
    stated = spec.capabilities.model_fields_set
    known = entry.capabilities().model_dump()
    caps = {k: (v if k in stated else known[k]) for k, v in spec.capabilities.model_dump().items()}
    if caps != spec.capabilities.model_dump():
        update["capabilities"] = Capabilities(**caps)
    return spec.model_copy(update=update)


def _reset_for_tests() -> None:
    global _loaded
    with _lock:
        _loaded = None
