"""Each policy's order, the class order on top of it, and LAS by attained service."""

from __future__ import annotations

import pytest

from app.kernel.errors import BadRequestError
from app.kernel.scheduler import Policy
from tests.kernel.scheduler.conftest import program, queue, serve_all, served_next


async def test_fifo_is_arrival_order_whatever_the_class(clock):
    q = queue("fifo", clock)
    ws = [q.push(program("a", "background")), q.push(program("b", "interactive")), q.push(program("c", "normal"))]
    assert [w.program.id for w in serve_all(q, list(ws))] == ["a", "b", "c"]


@pytest.mark.parametrize("policy", ["round_robin", "priority", "las"])
async def test_interactive_goes_before_normal_before_background(clock, policy):
    q = queue(policy, clock)
    ws = []
    for pid, cls in [("bg1", "background"), ("n1", "normal"), ("bg2", "background"), ("i1", "interactive"),
                     ("n2", "normal"), ("i2", "interactive")]:
        ws.append(q.push(program(pid, cls)))
        clock.now += 0.001
    assert [w.program.id for w in serve_all(q, ws)] == ["i1", "i2", "n1", "n2", "bg1", "bg2"]


async def test_priority_higher_first_then_arrival(clock):
    q = queue("priority", clock)
    ws = [q.push(program("low", priority=0)), q.push(program("high", priority=5)), q.push(program("mid", priority=2)),
          q.push(program("high2", priority=5))]
    assert [w.program.id for w in serve_all(q, ws)] == ["high", "high2", "mid", "low"]


async def test_round_robin_takes_turns_across_programs(clock):
    q = queue("round_robin", clock)
    ws = [q.push(program(pid)) for pid in ["a", "a", "a", "b", "b", "c"]]
    assert [w.program.id for w in serve_all(q, ws)] == ["a", "b", "c", "a", "b", "a"]


async def test_las_serves_the_least_attained_service_first(clock):
    q = queue("las", clock)
    heavy = q.hold(program("heavy"))  # heavy holds a slot for 10 s
    clock.now += 10
    assert not q.hand_over(heavy)
    light = q.hold(program("light"))  # light, for 1 s
    clock.now += 1
    assert not q.hand_over(light)
    ws = [q.push(program("heavy")), q.push(program("light")), q.push(program("new"))]
    assert [w.program.id for w in serve_all(q, ws)] == ["new", "light", "heavy"]
    assert q.service("heavy") == pytest.approx(10) and q.service("light") == pytest.approx(1)


async def test_las_counts_the_time_of_calls_still_running(clock):
    q = queue("las", clock)
    long_call = q.hold(program("a"))  # still running
    clock.now += 5
    done = q.hold(program("b"))
    clock.now += 2
    q.hand_over(done)  # b: 2 s, finished; a: 7 s so far, running
    ws = [q.push(program("a")), q.push(program("b"))]
    assert served_next(q, ws).program.id == "b"
    assert q.service("a") == pytest.approx(7)
    assert long_call.since == 100.0


async def test_las_ties_go_in_arrival_order(clock):
    q = queue("las", clock)
    ws = [q.push(program(pid)) for pid in ["x", "y", "z"]]
    assert [w.program.id for w in serve_all(q, ws)] == ["x", "y", "z"]


async def test_las_light_program_is_not_stuck_behind_a_heavy_one(clock):
    """Two programs on a one-slot model: a heavy one with a long backlog of 1 s calls, a light
    one arriving later with one call. Under LAS the light call is served as soon as the heavy
    program has more attained service than the light one (here: at the next free slot);
    under FIFO it waits for the whole backlog."""

    def run(policy: str) -> int:
        q = queue(policy, clock)
        holding = q.hold(program("heavy"))  # heavy's first call runs
        waiting = [q.push(program("heavy")) for _ in range(10)]
        clock.now += 0.5
        light = q.push(program("light"))
        waiting.append(light)
        for n in range(1, 12):
            clock.now += 1  # each call holds the slot 1 s
            w = served_next(q, waiting, holding)
            if w is light:
                return n  # the light call was the n-th served after it arrived
            holding = w.future.result()
        raise AssertionError("never served")

    assert run("las") == 1
    assert run("fifo") == 11


def test_unknown_policy_is_a_bad_request():
    with pytest.raises(BadRequestError, match="unknown scheduler policy 'sjf'; use one of fifo, round_robin"):
        Policy.parse("sjf")
    assert Policy.parse(" LAS ") is Policy.LAS
