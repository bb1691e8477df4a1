"""bench.hop_wakeups reads wake-ups out of `perf script` lines."""

from __future__ import annotations

import pytest

from bench.hop_wakeups import Wake, read_wakes, report

NAMES = {10: "client", 20: "gateway", 30: "upstream"}


def _switch(tid: int, cpu: int, at: float, prev: int, nxt: int, state: str = "S") -> str:
    return (f" {tid}/{tid}  [{cpu:03d}] {at:.6f}:       sched:sched_switch: prev_comm=python prev_pid={prev} "
            f"prev_prio=120 prev_state={state} ==> next_comm=python next_pid={nxt} next_prio=120")


def _waking(tid: int, cpu: int, at: float, wakee: int) -> str:
    return f" {tid}/{tid}  [{cpu:03d}] {at:.6f}:       sched:sched_waking: comm=python pid={wakee} prio=120 target_cpu=000"


def _runtime(tid: int, cpu: int, at: float, ns: int) -> str:
    return f" {tid}/{tid}  [{cpu:03d}] {at:.6f}: sched:sched_stat_runtime: comm=python pid={tid} runtime={ns} [ns]"


def test_a_wake_is_timed_to_the_wakees_switch_in_and_placed():
    trace = "\n".join([
        _switch(0, 1, 1.000000, 0, 0),  # cpu 1 idle
        _waking(20, 0, 1.000100, 30),  # the gateway wakes the upstream...
        _switch(0, 1, 1.000190, 0, 30, "R"),  # ...which runs on the other cpu 90 µs later
        _waking(30, 1, 1.050000, 20),  # the upstream wakes the gateway...
        _switch(30, 1, 1.050020, 30, 20, "R"),  # ...onto its own cpu
    ])
    wakes = read_wakes(trace, NAMES)
    assert [(w.waker, w.wakee, w.same_cpu) for w in wakes] == [("gateway", "upstream", False),
                                                                ("upstream", "gateway", True)]
    assert [w.latency_us for w in wakes] == [pytest.approx(90), pytest.approx(20)]


def test_a_wakee_whose_switch_in_is_missing_is_timed_by_its_runtime():
    trace = "\n".join([
        _waking(20, 0, 2.000000, 10),
        _waking(10, 1, 2.000500, 30),  # the client's first own event: it was running by then
        _runtime(10, 1, 2.000510, 430_000),  # 430 µs of running: it started at 2.000080
    ])
    assert read_wakes(trace, NAMES) == [Wake("gateway", "client", False, pytest.approx(80))]


def test_a_task_still_on_its_cpu_is_not_woken_and_strangers_are_ignored():
    trace = "\n".join([
        _switch(0, 1, 3.000000, 0, 30),  # the upstream is on cpu 1, about to sleep
        _waking(20, 0, 3.000010, 30),  # a wake that finds it still there: not a wake-up
        _waking(99, 0, 3.000020, 10),  # a process not named wakes the client: not counted
        _switch(30, 1, 3.000030, 30, 10),
    ])
    assert read_wakes(trace, NAMES) == []


def test_the_wakers_work_is_timed_from_its_own_wake_to_its_first_wake_of_another():
    trace = "\n".join([
        _waking(10, 0, 4.000000, 20),  # the client wakes the gateway...
        _switch(10, 0, 4.000020, 10, 20, "R"),  # ...which runs at once
        _waking(20, 0, 4.000270, 30),  # 250 µs later it wakes the upstream
        _switch(0, 1, 4.000300, 0, 30, "R"),
        _waking(20, 0, 4.000400, 10),  # a second wake in the same run: no work time of its own
        _switch(20, 0, 4.000410, 20, 10),
    ])
    wakes = read_wakes(trace, NAMES)
    assert [(w.waker, w.wakee, w.waker_woken_by) for w in wakes] == [
        ("client", "gateway", None), ("gateway", "upstream", "client"), ("gateway", "client", None)]
    assert wakes[1].waker_work_us == pytest.approx(250)
    assert any("the gateway's work from client's wake to waking upstream: median 250 us" in line
               for line in report(wakes))


def test_work_ends_when_the_waker_sleeps():
    trace = "\n".join([
        _waking(10, 0, 5.000000, 20),
        _switch(10, 0, 5.000020, 10, 20, "R"),
        _switch(20, 0, 5.000200, 20, 10),  # the gateway sleeps without waking anyone
        _switch(10, 0, 5.000300, 10, 0),  # and so does the client
        _waking(20, 1, 5.050000, 10),  # 50 ms later, woken by something unnamed, it wakes the client
        _switch(0, 0, 5.050030, 0, 10, "R"),
    ])
    wakes = read_wakes(trace, NAMES)
    assert [(w.waker, w.wakee, w.waker_work_us) for w in wakes] == [("client", "gateway", None),
                                                                     ("gateway", "client", None)]
