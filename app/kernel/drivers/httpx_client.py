"""Shared HTTP plumbing for drivers that talk to a server: client set-up, SSE, error mapping."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.kernel.drivers.base import ProviderConfig
from app.kernel.errors import (
    ByenatosError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UpstreamUnreachableError,
    from_http_status,
    parse_retry_after,
)
from app.kernel.loopback import is_loopback


def make_client(config: ProviderConfig, *, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """One pooled client per provider. Proxies from the environment apply to remote hosts only."""
    return httpx.AsyncClient(
        base_url=(config.base_url or "").rstrip("/"),
        headers=headers or {},
        timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30),
        trust_env=not is_loopback(config.base_url),
    )


def error_message(body: bytes | str, fallback: str) -> str:
    """The upstream's own sentence from an error body, in words: the message inside any vendor's
    error JSON ({"error": {"message"}}, {"error": "..."}, {"message"}, {"detail"}, FastAPI's
    lists, a message that is itself JSON), the title or text of an HTML error page, or the text,
    with its whitespace collapsed. Never JSON; `fallback` when the body says nothing."""
    text = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body).strip()
    found = _words_in(text, 0) if text else None
    return found[:500] if found else fallback


def status_message(message: str, status: int, provider: str | None) -> str:
    """`message` with where it came from: "model overloaded (HTTP 503 from provider fake)"."""
    where = f"HTTP {status} from provider {provider}" if provider else f"HTTP {status}"
    if not message or message == f"HTTP {status}":
        return where
    return f"{message} ({where})"


def excerpt(body: bytes | str, limit: int = 120) -> str:
    """A short readable excerpt of a body that is not what was expected (for error messages)."""
    text = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body).strip()
    if not text:
        return "an empty body"
    words = _words_in(text, 0)
    if words is None:  # JSON with no message in it: what it holds, not its bytes
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        keys = ", ".join(str(k) for k in list(data)[:8]) if isinstance(data, dict) else ""
        words = f"an object with {keys}" if keys else f"a JSON {type(data).__name__ if data is not None else 'value'}"
    return words if len(words) <= limit else words[: limit - 1] + "…"


_MESSAGE_KEYS = ("error", "message", "detail", "error_description", "msg", "errors", "title", "reason")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _words_in(text: str, depth: int) -> str | None:
    if text[:1] in "{[":
        try:
            data = json.loads(text)
        except ValueError:
            pass  # not JSON after all: read as text
        else:
            return _message_in(data, depth)
    if text[:1] == "<":  # an HTML error page (a proxy's, a web server's)
        title = _TITLE.search(text)
        text = html.unescape(title.group(1) if title else _TAG.sub(" ", text))
    return " ".join(text.split()) or None


def _message_in(obj: Any, depth: int) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        return _words_in(obj.strip(), depth + 1) if obj.strip() else None
    if isinstance(obj, dict):
        for key in _MESSAGE_KEYS:
            if key in obj:
                found = _message_in(obj[key], depth + 1)
                if found:
                    return found
        return None
    if isinstance(obj, list):
        found = [m for m in (_message_in(item, depth + 1) for item in obj[:3]) if m]
        return "; ".join(found) or None
    return None


def status_error(response: httpx.Response, body: bytes, *, provider: str, model: str | None) -> ByenatosError:
    status = response.status_code
    return from_http_status(
        status,
        status_message(error_message(body, ""), status, provider),
        provider=provider,
        model=model,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def transport_error(exc: httpx.HTTPError, *, provider: str, model: str | None) -> ByenatosError:
    """Map httpx's exceptions (refused, timed out, dropped) to typed, retryable errors."""
    kw = {"provider": provider, "model": model}
    if isinstance(exc, httpx.TimeoutException):
        phase = "connecting" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "waiting for the answer"
        return UpstreamTimeoutError(f"timed out {phase}", **kw)
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnreachableError(f"cannot connect: {exc or 'connection refused'}", **kw)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return UpstreamUnavailableError(f"connection dropped: {exc or type(exc).__name__}", **kw)
    return UpstreamUnavailableError(f"{type(exc).__name__}: {exc}", **kw)


async def post_json(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], *, provider: str, model: str | None,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST JSON, return the parsed JSON answer, or raise the typed error."""
    try:
        response = await client.post(path, json=body, headers=headers)
    except httpx.HTTPError as e:
        raise transport_error(e, provider=provider, model=model) from e
    if response.status_code >= 400:
        raise status_error(response, response.content, provider=provider, model=model)
    try:
        return response.json()
    except ValueError as e:
        raise UpstreamUnavailableError(f"the answer from provider {provider} is not JSON: {excerpt(response.content)}",
                                       provider=provider, model=model) from e


async def get_json(client: httpx.AsyncClient, path: str, *, provider: str, timeout: float | None = None) -> Any:
    try:
        response = await client.get(path, timeout=timeout) if timeout else await client.get(path)
    except httpx.HTTPError as e:
        raise transport_error(e, provider=provider, model=None) from e
    if response.status_code >= 400:
        raise status_error(response, response.content, provider=provider, model=None)
    try:
        return response.json()
    except ValueError as e:
        raise UpstreamUnavailableError("upstream sent invalid JSON", provider=provider) from e


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], *, provider: str, model: str | None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """POST and hand back the streaming response once its status is known to be 2xx.

    Leaving the block closes the connection, which is how a cancelled client stops the
    upstream generating.
    """
    request = client.build_request("POST", path, json=body, headers=headers)
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as e:
        raise transport_error(e, provider=provider, model=model) from e
    try:
        if response.status_code >= 400:
            raw = await response.aread()
            raise status_error(response, raw, provider=provider, model=model)
        yield response
    finally:
        await response.aclose()


async def iter_sse(response: httpx.Response, *, provider: str, model: str | None) -> AsyncIterator[tuple[str, str]]:
    """Yield (event, data) pairs of a server-sent-events body; maps a dropped connection."""
    event, data_lines = "", []
    try:
        async for line in response.aiter_lines():
            if not line:
                if data_lines:
                    yield event or "message", "\n".join(data_lines)
                event, data_lines = "", []
                continue
            if line.startswith(":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            elif name == "event":
                event = value
        if data_lines:
            yield event or "message", "\n".join(data_lines)
    except httpx.HTTPError as e:
        raise transport_error(e, provider=provider, model=model) from e


async def iter_json_lines(response: httpx.Response, *, provider: str, model: str | None) -> AsyncIterator[Any]:
    """Yield parsed objects of a newline-delimited JSON body (Ollama's native streaming)."""
    try:
        async for line in response.aiter_lines():
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    raise UpstreamUnavailableError(f"provider {provider} sent a stream line that is not JSON: "
                                                   f"{excerpt(line)}",
                                                   provider=provider, model=model) from e
    except httpx.HTTPError as e:
        raise transport_error(e, provider=provider, model=model) from e
