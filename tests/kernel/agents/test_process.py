"""The process state machine, quotas and usage."""

from __future__ import annotations

import itertools

import pytest

from app.kernel.agents.process import (
    TRANSITIONS,
    IllegalTransitionError,
    ProcessState,
    Quotas,
    Usage,
    check_transition,
)
from app.kernel.errors import BadRequestError

S = ProcessState


@pytest.mark.parametrize(("current", "target"), [(c, t) for c, ts in TRANSITIONS.items() for t in ts])
def test_every_legal_transition_is_accepted(current, target):
    check_transition(1, current, target, "move")


ILLEGAL = [(c, t) for c, t in itertools.product(S, S) if t not in TRANSITIONS[c] and c is not t]


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused(current, target):
    with pytest.raises(IllegalTransitionError) as e:
        check_transition(7, current, target, "move")
    assert e.value.status == 409 and "agent 7" in str(e.value)


def test_the_state_machine_says_what_users_expect():
    assert not TRANSITIONS[S.DONE] and not TRANSITIONS[S.FAILED] and not TRANSITIONS[S.KILLED]
    assert S.READY in TRANSITIONS[S.SUSPENDED] and S.RUNNING not in TRANSITIONS[S.SUSPENDED]
    for state in S:  # every live or suspended process can be killed
        assert (S.KILLED in TRANSITIONS[state]) is (not state.terminal)
    with pytest.raises(IllegalTransitionError, match="cannot resume agent 3: it is not suspended"):
        check_transition(3, S.RUNNING, S.READY, "resume")
    with pytest.raises(IllegalTransitionError, match=r"already ended \(done\)"):
        check_transition(3, S.DONE, S.KILLED, "kill")


def test_quotas_reject_zero_negatives_and_unknown_names():
    for bad in ({"steps": 0}, {"tokens": -5}, {"cost": 0.0}, {"steps": "ten"}, {"steps": True}):
        with pytest.raises(BadRequestError):
            Quotas.from_dict(bad)
    with pytest.raises(BadRequestError, match="unknown quota 'minutes'"):
        Quotas.from_dict({"minutes": 3})


def test_a_reached_quota_is_named_in_words():
    usage = Usage(prompt_tokens=900, completion_tokens=100, steps=4, tool_calls=9, cost=0.25, wall_s=12.5)
    assert Quotas(tokens=2000).exceeded(usage) is None
    assert Quotas(tokens=1000).exceeded(usage) == "quota reached: 1000 of 1000 tokens"
    assert Quotas(tool_calls=9).exceeded(usage) == "quota reached: 9 of 9 tool calls"
    assert Quotas(cost=0.2).exceeded(usage) == "quota reached: 0.25 of 0.2 cost"
    # the steps quota counts steps begun: it does not stop the tool calls of the last step
    assert Quotas(steps=4).exceeded(usage, before="model") == "quota reached: 4 of 4 steps"
    assert Quotas(steps=4).exceeded(usage, before="tool") is None


def test_raising_and_removing_a_quota():
    q = Quotas(steps=5, tokens=100)
    assert q.merged({"steps": 50}).to_dict() == {"steps": 50, "tokens": 100}
    assert q.merged({"tokens": None}).to_dict() == {"steps": 5}
    with pytest.raises(BadRequestError):
        q.merged({"steps": -1})


def test_usage_round_trips():
    u = Usage(prompt_tokens=3, completion_tokens=4, calls=2, steps=2, tool_calls=1, cost=0.1, wall_s=1.5)
    assert Usage.from_dict(u.to_dict()) == u and u.to_dict()["tokens"] == 7
