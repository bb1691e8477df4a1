from hypothesis import given
from hypothesis import strategies as st

from app.kernel import sse


def test_complete_prefix_stops_after_the_last_whole_event():
    buffer = b"data: 1\n\ndata: 2\r\n\r\ndata: 3"

    end = sse.complete_prefix(buffer)

    assert buffer[:end] == b"data: 1\n\ndata: 2\r\n\r\n"
    assert sse.complete_prefix(b"data: partial") == 0


def test_events_splits_a_batch_and_keeps_each_terminator():
    assert sse.events(b"data: 1\n\ndata: 2\n\n") == [b"data: 1\n\n", b"data: 2\n\n"]
    assert sse.events(b"data: 1\n\ndata: cut") == [b"data: 1\n\n", b"data: cut"]
    assert sse.events(b"") == []


def test_ends_with_done_only_when_the_terminator_is_last():
    assert sse.ends_with_done(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    assert not sse.ends_with_done(b"data: [DONE]\n\ndata: {}\n\n")
    assert not sse.ends_with_done(b'data: {"a":1}\n\n')


def test_drop_events_with_removes_exactly_the_marked_events():
    usage = b'data: {"choices":[],"usage":{"total_tokens":3}}'
    for end in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        batch = b"data: 1" + end + usage + end + b"data: 2" + end + usage + end + b"data: [DONE]" + end
        assert sse.drop_events_with(batch, (b'"choices":[]',)) == b"data: 1" + end + b"data: 2" + end + b"data: [DONE]" + end
    assert sse.drop_events_with(usage + b"\n\n", (b'"choices":[]',)) == b""
    assert sse.drop_events_with(b"data: 1\n\n", (b'"choices":[]',)) == b"data: 1\n\n"
    # same result as splitting the batch into events and filtering them
    mixed = b"data: a\n\n" + usage + b"\r\n\r\ndata: b\r\r" + usage + b"\n\n"
    expected = b"".join(e for e in sse.events(mixed) if b'"choices":[]' not in e)
    assert sse.drop_events_with(mixed, (b'"choices":[]',)) == expected


def test_complete_prefix_of_a_buffer_ending_with_an_event_is_all_of_it():
    for end in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        assert sse.complete_prefix(b"data: 1" + end + b"data: 2" + end) == len(b"data: 1" + end + b"data: 2" + end)


_MARK = b'"choices":[]'
_payloads = st.lists(st.sampled_from([b"data: a", b'data: {"x":1}', b"data: " + _MARK, b": note", b"data: [DONE]",
                                      b"data: " + _MARK + b" and " + _MARK]), min_size=0, max_size=8)


@given(_payloads, st.lists(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r"]), min_size=8, max_size=8),
       st.booleans(), st.booleans())
def test_drop_events_with_is_splitting_and_filtering(payloads, ends, lf_only, cut_last):
    """The batch's own search (the LF-only shortcut included) drops exactly the events that
    splitting the batch with events() and filtering would."""
    ends = [b"\n\n"] * 8 if lf_only else ends
    events = [p + e for p, e in zip(payloads, ends, strict=False)]
    if cut_last and events:
        events[-1] = payloads[len(events) - 1]  # a last event without its blank line
    batch = b"".join(events)

    expected = b"".join(e for e in sse.events(batch) if _MARK not in e)

    assert sse.drop_events_with(batch, (_MARK,)) == expected
