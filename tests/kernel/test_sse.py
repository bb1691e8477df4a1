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
