"""The wait queue: starvation-freedom, waiters that go away, settings changes, bounded memory,
the preemption hook and what it reports."""

from __future__ import annotations

import pytest

from app.kernel.scheduler import queue as queue_module
from tests.kernel.scheduler.conftest import program, queue, serve_all, served_next


@pytest.mark.parametrize("policy", ["round_robin", "priority", "las"])
async def test_a_background_call_is_served_within_the_bound_under_an_interactive_flood(clock, policy):
    """One slot, a background call waiting, and a new interactive call arriving every second,
    each holding the slot for a second: the background call is served at the first free slot
    once it has waited the bound (30 s), never before, although interactive calls still wait."""
    q = queue(policy, clock, starvation_s=30.0)
    background = q.push(program("agent", "background"))
    arrived = clock.now
    waiting = [background]
    for n in range(5):  # a backlog of interactive calls first
        waiting.append(q.push(program(f"app{n % 2}", "interactive", priority=9)))
    served_at = None
    for _ in range(100):
        clock.now += 1.0
        waiting.append(q.push(program("popup", "interactive", priority=9)))  # the flood goes on
        w = served_next(q, waiting)
        if w is background:
            served_at = clock.now
            break
    assert served_at is not None, "the background call starved"
    assert served_at - arrived == pytest.approx(30.0)
    assert q.waiting_by_class()["interactive"] > 0 and q.rescued == 1


async def test_starved_calls_go_oldest_first_then_the_policy_resumes(clock):
    q = queue("las", clock, starvation_s=10.0)
    old_bg, old_normal = q.push(program("bg", "background")), q.push(program("n", "normal"))
    clock.now += 10
    fresh = q.push(program("i", "interactive"))
    assert [w.program.id for w in serve_all(q, [old_bg, old_normal, fresh])] == ["bg", "n", "i"]


async def test_a_waiter_cancelled_before_its_turn_is_skipped(clock):
    q = queue("las", clock)
    gone, stays = q.push(program("a")), q.push(program("b"))
    gone.future.cancel()
    q.discard(gone)
    assert served_next(q, [stays]) is stays
    assert not q.hand_over(None)  # nobody left: the caller frees the slot
    assert q.waiting_by_class() == {"interactive": 0, "normal": 0, "background": 0}


async def test_a_cancelled_future_not_yet_discarded_is_not_served(clock):
    """Cancelled, but its task has not run yet to discard it: the slot goes to the next one."""
    q = queue("fifo", clock)
    gone, stays = q.push(program("a")), q.push(program("b"))
    gone.future.cancel()
    assert served_next(q, [gone, stays]) is stays
    q.discard(gone)  # its task runs later: nothing to undo
    assert q.waiting_by_class()["normal"] == 0


async def test_many_cancelled_waiters_do_not_pile_up(clock):
    q = queue("las", clock)
    keep = q.push(program("keeper"))
    for n in range(5000):
        w = q.push(program(f"p{n}"))
        w.future.cancel()
        q.discard(w)
        if n % 100 == 0:
            # a slot freed now and then: finds the keeper, and the pile is swept
            assert served_next(q, [keep]) is keep
            keep = q.push(program("keeper"))
    assert len(q._arrivals) < 300 and sum(len(i._heap) for i in q._indices) < 300


async def test_changing_the_policy_reorders_the_waiters(clock):
    sched_q = queue("fifo", clock)
    ws = [sched_q.push(program("bg", "background")), sched_q.push(program("i", "interactive"))]
    sched_q.scheduler.configure(policy="las")
    assert [w.program.id for w in serve_all(sched_q, ws)] == ["i", "bg"]
    assert sched_q.policy.value == "las"


async def test_idle_programs_are_forgotten_past_the_cap(clock, monkeypatch):
    monkeypatch.setattr(queue_module, "MAX_PROGRAMS", 8)
    q = queue("las", clock)
    q.hold(program("busy"))  # running all along
    for n in range(20):
        waiting = q.push(program("waiting"))  # one call always waiting (each hand-over serves it)
        clock.now += 1
        assert served_next(q, [waiting], q.hold(program(f"p{n}"))) is waiting
        q.push(program("waiting"))
        clock.now += 1
        q.hand_over(q.hold(program(f"q{n}")))
    assert len(q._accounts) <= 8
    assert "busy" in q._accounts and "waiting" in q._accounts  # never forgotten while in use
    assert q.service("busy") == pytest.approx(40)


async def test_giving_a_hold_back_twice_charges_it_once(clock):
    q = queue("las", clock)
    h = q.hold(program("a"))
    clock.now += 3
    q.hand_over(h)
    clock.now += 3
    q.hand_over(h)
    assert q.service("a") == pytest.approx(3)


async def test_preemptible_queue_asks_a_less_urgent_holder_to_yield(clock):
    from app.kernel.scheduler import Scheduler

    q = Scheduler(clock=clock).new_queue(preemptible=True)
    asked = []
    normal = q.hold(program("n", "normal"))
    background = q.hold(program("bg", "background"))
    background.on_preempt = lambda: asked.append("bg")
    q.push(program("bg2", "background"))  # not more urgent than anyone running: nothing asked
    assert not background.preempt_requested
    q.push(program("popup", "interactive"))
    assert background.preempt_requested and asked == ["bg"] and not normal.preempt_requested
    q.push(program("popup", "interactive"))  # asked once; the next least urgent is asked now
    assert normal.preempt_requested and asked == ["bg"]


async def test_snapshot_names_the_programs_with_the_most_service(clock):
    q = queue("las", clock)
    for pid, held in [("a", 1.0), ("b", 5.0), ("c", 3.0)]:
        h = q.hold(program(pid))
        clock.now += held
        q.hand_over(h)
    q.push(program("d", "background"))
    clock.now += 2
    snap = q.snapshot(top=2)
    assert [p["id"] for p in snap["programs"]] == ["b", "c"]
    assert snap["waiting"] == {"interactive": 0, "normal": 0, "background": 1}
    assert snap["oldest_wait_s"] == pytest.approx(2.0)
