"""Token counts for prompts, offline and fast, with each model family's own tokenizer.

* OpenAI models: tiktoken (o200k_base for gpt-4o, gpt-4.1+, gpt-5 and the o-series;
  cl100k_base for the rest). tiktoken downloads its BPE files on first use, which fails
  offline; litellm ships them (named by the SHA-1 of their URL), so we point
  `TIKTOKEN_CACHE_DIR` at its folder, as litellm itself does on import.
* Anthropic models: the tokenizer litellm ships (`anthropic_tokenizer.json`), read with
  the `tokenizers` package. Claude 3+ tokenizers are not public; it is what litellm uses too.
* Local GGUF models: the caller passes the model's own tokenizer (`tokenizer=`), since
  only the runtime that holds the vocabulary can count with it.
* Everything else: cl100k_base. With no BPE file usable, a calibrated estimate that
  errs high (ASCII ≈ 3.5 characters a token, anything else a token a character); a log
  line says so once.

An encoder costs 0.6-1.6 s and 35-75 MB to build, so nothing loads before the first count
for its family; `warm_up()` builds one off the event loop. After that, counting a
20-message history takes tens of microseconds (texts seen before come from a small cache).

Message overhead follows OpenAI's published convention: 3 tokens per message (role
framing), 1 more when it has a `name`, and 3 priming the reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.kernel.canonical import ModelSpec

log = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_TOOL_CALL = 3  # function-call framing: an estimate, OpenAI does not publish it
IMAGE_TOKENS_LOW = 85  # OpenAI's figure for a low-detail image
IMAGE_TOKENS_HIGH = 765  # a 1024x1024 image at high detail (dimensions are not known here)

_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_O200K_NAMES = re.compile(r"^(ft:)?(gpt-4o|chatgpt-4o|gpt-4\.[1-9]|gpt-[5-9]|gpt-oss|o[1-9]\b|o[1-9]-|codex)")
_CACHE_SIZE = 8192  # texts whose counts are remembered, per tokenizer (~1 MB)

TextCounter = Callable[[str], int]


# ── picking a counter ─────────────────────────────────────────────────────────


def family(spec: ModelSpec) -> str:
    """The tokenizer a model is counted with: "o200k_base", "cl100k_base" or "anthropic"."""
    name = spec.name.lower().rsplit("/", 1)[-1]
    if spec.vendor == "anthropic" or "claude" in name:
        return "anthropic"
    if _O200K_NAMES.match(name):
        return "o200k_base"
    return "cl100k_base"


def text_counter(spec: ModelSpec, tokenizer: TextCounter | None = None) -> TextCounter:
    """A function str → token count for this model (loads the encoder on first use)."""
    if tokenizer is not None:
        return tokenizer
    return _counter(family(spec))


def is_warm(spec: ModelSpec) -> bool:
    """Whether counting for this model will not have to build an encoder first."""
    return family(spec) in _COUNTERS


async def warm_up(spec: ModelSpec) -> None:
    """Build the model's encoder in a worker thread, so the first count does not block the loop."""
    if not is_warm(spec):
        await asyncio.to_thread(_counter, family(spec))


# ── counting ──────────────────────────────────────────────────────────────────


def count_tokens(
    spec: ModelSpec,
    messages: Sequence[Mapping[str, Any] | Any] | str,
    *,
    tokenizer: TextCounter | None = None,
) -> int:
    """Tokens a prompt takes: a plain text, or chat messages with their framing and reply priming."""
    count = text_counter(spec, tokenizer)
    if isinstance(messages, str):
        return count(messages)
    return REPLY_PRIMING + sum(_message_tokens(m, count) for m in messages)


def count_message_tokens(
    spec: ModelSpec, message: Mapping[str, Any] | Any, *, tokenizer: TextCounter | None = None
) -> int:
    """Tokens one chat message takes in a prompt, its framing included (reply priming not)."""
    return _message_tokens(message, text_counter(spec, tokenizer))


def _message_tokens(message: Mapping[str, Any] | Any, count: TextCounter) -> int:
    if not isinstance(message, Mapping):  # a ChatMessage or another pydantic model
        message = message.model_dump(exclude_none=True)
    n = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if value is None:
            continue
        if key == "content":
            n += _content_tokens(value, count)
        elif key == "tool_calls":
            for call in value:
                function = (call.get("function") if isinstance(call, Mapping) else None) or {}
                n += TOKENS_PER_TOOL_CALL + count(function.get("name") or "")
                n += count(function.get("arguments") or "")
        elif isinstance(value, str):  # role, name, tool_call_id
            n += count(value) + (TOKENS_PER_NAME if key == "name" else 0)
    return n


def _content_tokens(content: Any, count: TextCounter) -> int:
    if isinstance(content, str):
        return count(content)
    n = 0
    for part in content or ():
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            n += count(part.get("text") or "")
        elif kind == "image_url":
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, Mapping) else None
            n += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
        elif isinstance(part.get("text"), str):
            n += count(part["text"])
    return n


def estimate_tokens(text: str) -> int:
    """Offline estimate when no tokenizer is usable; errs high so trimmed prompts still fit.

    Calibrated on English prose, Python and CJK/German text against cl100k_base and
    o200k_base: ASCII runs at 3.5-4.4 characters a token, other scripts near one a character.
    """
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 3.5 + (len(text) - ascii_chars))


# ── encoders (lazy, cached, thread-safe) ─────────────────────────────────────

_COUNTERS: dict[str, TextCounter] = {}
_LOCK = threading.Lock()
_FALLBACK_LOGGED: set[str] = set()


def _counter(name: str) -> TextCounter:
    counter = _COUNTERS.get(name)
    if counter is not None:
        return counter
    with _LOCK:  # two threads must not build the same 75 MB encoder twice
        counter = _COUNTERS.get(name)
        if counter is None:
            counter = _CountCache(_build(name))
            _COUNTERS[name] = counter
    return counter


class _CountCache:
    """Remembers counts of texts seen lately: a history is recounted on every turn.

    Keyed by the text's length and hash, not the text, so a pasted 100 kB document costs
    a few bytes here (hashing it is ~1000x cheaper than encoding it). A hash collision,
    vanishingly rare at 64 bits, would cost only a wrong count for one message.
    """

    def __init__(self, count: TextCounter, size: int = _CACHE_SIZE) -> None:
        self._count = count
        self._size = size
        # used from the loop and worker threads without a lock: each OrderedDict call is
        # atomic under the GIL, and a race can at worst forget an entry early
        self._seen: OrderedDict[tuple[int, int], int] = OrderedDict()

    def __call__(self, text: str) -> int:
        key = (len(text), hash(text))
        n = self._seen.get(key)
        if n is not None:
            try:
                self._seen.move_to_end(key)
            except KeyError:  # evicted by another thread just now
                pass
            return n
        n = self._count(text)
        self._seen[key] = n
        if len(self._seen) > self._size:
            try:
                self._seen.popitem(last=False)
            except KeyError:
                pass
        return n


def _build(name: str) -> TextCounter:
    try:
        if name == "anthropic":
            return _anthropic_counter()
        return _tiktoken_counter(name)
    except Exception as exc:  # a missing file, a package that will not import: estimate instead
        if name not in _FALLBACK_LOGGED:
            _FALLBACK_LOGGED.add(name)
            log.warning("no %s tokenizer available (%s); token counts are estimated", name, exc)
        return estimate_tokens


def _litellm_tokenizers_dir() -> Path | None:
    """litellm's bundled tokenizer files, found without importing litellm (2-4 s)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def _tiktoken_counter(name: str) -> TextCounter:
    cache_file = hashlib.sha1(_TIKTOKEN_URL.format(name).encode()).hexdigest()
    user_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    if not (user_dir and (Path(user_dir) / cache_file).is_file()):
        bundled = _litellm_tokenizers_dir()
        if bundled is None or not (bundled / cache_file).is_file():
            # without the file tiktoken would try to download it: never on a request's path
            raise FileNotFoundError(f"no cached {name} BPE file (litellm's bundled copy is missing)")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)  # what litellm sets on import, too
    import tiktoken

    encoding = tiktoken.get_encoding(name)  # shared with litellm's own counting when it is loaded
    encode = encoding.encode_ordinary  # special-token text in a prompt is just text here

    def count(text: str) -> int:
        return len(encode(text)) if text else 0

    return count


def _anthropic_counter() -> TextCounter:
    folder = _litellm_tokenizers_dir()
    path = folder / "anthropic_tokenizer.json" if folder else None
    if path is None or not path.is_file():
        raise FileNotFoundError("litellm's anthropic_tokenizer.json is missing")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    return count
