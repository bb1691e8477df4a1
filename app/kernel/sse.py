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
DONE = b"data: [DONE]"


def complete_prefix(buffer: bytes) -> int:
    """Length of the leading run of complete events in `buffer` (0 if none is complete yet)."""
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
