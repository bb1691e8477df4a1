"""Routed streams and the usage they carry: the kernel's and the gateway's lane's shared helpers.

`ObservedStream` wraps a routed stream so that how it ended (usage, outcome) is reported once;
the functions read usage out of OpenAI JSON and server-sent-event batches without parsing
more than the event that carries it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from app.kernel.canonical import ChatChunk, ModelSpec, Usage
from app.kernel.errors import ByenatosError

T = TypeVar("T")


def stream_wire(name: str, driver: Any, body: dict[str, Any], *, meter: bool) -> dict[str, Any]:
    """The body of a pass-through stream as `driver` gets it for its model `name`: the name,
    `stream`, and with `meter` the usage chunk asked for where the backend accepts `stream_options`."""
    wire = {**body, "model": name, "stream": True}
    config = getattr(driver, "config", None)
    if meter and getattr(config, "options", {}).get("stream_usage") is not False:
        wire["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return wire


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Usage.model_validate(raw)
    except ValueError:
        return None


def chunk_usage(chunk: ChatChunk) -> Usage | None:
    return chunk.usage


def sse_usage(batch: bytes) -> Usage | None:
    """Usage from a raw SSE batch, parsed only when an event carries it (the last one)."""
    if b'"usage"' not in batch:
        return None
    # Metered streams carry `"usage":null` in every chunk but the last: C-speed counts skip those.
    if batch.count(b'"usage"') == batch.count(b'"usage":null') + batch.count(b'"usage": null'):
        return None
    import orjson

    from app.kernel import sse

    at = batch.rfind(b'"usage"')
    while at >= 0:  # the events that mention usage, last first, without splitting the batch
        start, end = sse.event_around(batch, at)
        event = batch[start:end]
        if b'"usage":null' not in event and b'"usage": null' not in event:
            try:
                data = orjson.loads(event.partition(b"data:")[2])
            except orjson.JSONDecodeError:
                data = None
            usage = usage_of(data.get("usage")) if isinstance(data, dict) else None
            if usage is not None:
                return usage
        at = batch.rfind(b'"usage"', 0, start)
    return None


async def encode_sse(chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


class ObservedStream(AsyncIterator[T]):
    """A routed stream that reports how it ended (usage, outcome) exactly once.

    A class, not an async generator, so that `aclose()` on a stream nobody iterated still
    releases the deployment and records the request.
    """

    def __init__(self, inner: AsyncIterator[T], on_end: Callable[[Usage | None, str], None], *,
                 usage_of: Callable[[T], Usage | None], served_by: ModelSpec) -> None:
        self._inner, self._on_end, self._usage_of = inner, on_end, usage_of
        self.served_by = served_by
        self._usage: Usage | None = None
        self._ended = False

    def __aiter__(self) -> ObservedStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            item = await anext(self._inner)
        except StopAsyncIteration:
            self._end("ok")
            raise
        except ByenatosError as e:
            self._end(e.code)
            raise
        except BaseException:
            self._end("cancelled")
            raise
        usage = self._usage_of(item)
        if usage is not None:
            self._usage = usage
        return item

    def complete(self) -> None:
        """The consumer has the whole answer (an OpenAI stream's `[DONE]` went out): record the
        request as served now. Reading the upstream's tail after this, or closing the stream,
        no longer changes what was recorded."""
        self._end("ok")

    def _end(self, outcome: str) -> None:
        if not self._ended:
            self._ended = True
            self._on_end(self._usage, outcome)

    async def aclose(self) -> None:
        self._end("cancelled")
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()
