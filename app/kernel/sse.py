"""Raw server-sent-event batches, as the gateway's fast path relays them.

A raw stream (`Kernel.stream_raw`, `OpenAICompatDriver.stream_post_raw`) yields *batches*:
each item holds one or more complete SSE events, everything that arrived from the upstream in
one read. Relaying a batch with one write instead of one write per event matters on the
gateway's hot path: a loopback send costs tens of microseconds here, and a fast upstream
sends a whole short answer in one segment. Consumers that look inside events (usage counts,
re-encoding) split a batch with `events()`.
"""

from __future__ import annotations

import re

EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_TERMINATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")
DONE = b"data: [DONE]"
TERMINATORS = _TERMINATORS  # what ends an SSE event, most common first
# A metered stream's final usage chunk (no choices), compact or not: dropped for clients that
# did not ask for it.
USAGE_ONLY = (b'"choices":[]', b'"choices": []')
TAIL_TIMEOUT_S = 5.0  # how long the end of an upstream stream is awaited after its [DONE]


def complete_prefix(buffer: bytes) -> int:
    """Length of the leading run of complete events in `buffer` (0 if none is complete yet)."""
    if buffer.endswith(_TERMINATORS):
        return len(buffer)  # the usual case: a read ends where an event does
    end = 0
    for match in EVENT_END.finditer(buffer):
        end = match.end()
    return end


def events(batch: bytes) -> list[bytes]:
    """The events of a batch, each with its terminating blank line."""
    out: list[bytes] = []
    start = 0
    for match in EVENT_END.finditer(batch):
        out.append(batch[start : match.end()])
        start = match.end()
    if batch[start:].strip():
        out.append(batch[start:])  # a last event without its blank line (a stream cut short)
    return out


def ends_with_done(batch: bytes) -> bool:
    """Whether the batch ends with OpenAI's `data: [DONE]` terminator: nothing follows it."""
    return batch.rstrip().endswith(DONE)


def event_around(batch: bytes, at: int) -> tuple[int, int]:
    """Start and end (terminator included) of the event holding byte `at` of `batch`."""
    start, end = 0, len(batch)
    for terminator in _TERMINATORS:
        before = batch.rfind(terminator, 0, at)
        if before >= 0:
            start = max(start, before + len(terminator))
        after = batch.find(terminator, at)
        if after >= 0:
            end = min(end, after + len(terminator))
    return start, end


def drop_events_with(batch: bytes, markers: tuple[bytes, ...]) -> bytes:
    """`batch` without the events that contain any of `markers`. Found with C-speed searches:
    the batch is not split into events (a coalesced stream's batch holds dozens)."""
    lf_only = b"\r" not in batch  # the usual batch: event_around's search, for one terminator only
    for marker in markers:
        at = batch.find(marker)
        while at >= 0:
            if lf_only:
                start = batch.rfind(b"\n\n", 0, at)
                start = start + 2 if start >= 0 else 0
                end = batch.find(b"\n\n", at)
                end = end + 2 if end >= 0 else len(batch)
            else:
                start, end = event_around(batch, at)
            batch = batch[:start] + batch[end:]
            at = batch.find(marker, start)
    return batch
