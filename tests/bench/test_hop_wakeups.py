"""bench.hop_wakeups reads wake-ups out of `perf script` lines."""

from __future__ import annotations

import pytest

from bench.hop_wakeups import Wake, read_wakes

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
