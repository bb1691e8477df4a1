"""Programs: what they may be, the context variable that carries them, the header that lowers them."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.errors import BadRequestError, PermissionDeniedError
from app.kernel.scheduler import INTERNAL, Program, ProgramClass, current_program, run_as
from app.kernel.scheduler.program import lowered


@pytest.mark.parametrize("priority", [-1, 1001, 1.5, True, "3"])
def test_a_bad_priority_is_refused_with_a_clear_message(priority):
    with pytest.raises(BadRequestError, match="priority"):
        Program("agent-1", ProgramClass.NORMAL, priority)


def test_a_program_needs_an_id_and_a_known_class():
    with pytest.raises(BadRequestError, match="needs an id"):
        Program("")
    with pytest.raises(BadRequestError, match="unknown program class 'urgent'; use one of interactive, normal"):
        Program("x", "urgent")  # type: ignore[arg-type]
    assert Program("x", "Background").class_ is ProgramClass.BACKGROUND  # type: ignore[arg-type]


async def test_run_as_carries_the_program_into_tasks_and_restores_the_caller():
    assert current_program.get() is None
    agent = Program("agent-7", ProgramClass.BACKGROUND)

    async def who() -> Program | None:
        await asyncio.sleep(0)
        return current_program.get()

    with run_as(agent):
        assert await asyncio.create_task(who()) is agent
        with run_as(INTERNAL):
            assert current_program.get() is INTERNAL
        assert current_program.get() is agent
    assert current_program.get() is None


APP = Program("chat-app", ProgramClass.INTERACTIVE)
AGENT = Program("agent-3", ProgramClass.NORMAL, priority=2)


@pytest.mark.parametrize(("base", "header", "expected"), [
    (APP, None, APP),
    (APP, "background", Program("chat-app", ProgramClass.BACKGROUND)),
    (APP, "interactive", APP),
    (APP, "normal; priority=0", Program("chat-app", ProgramClass.NORMAL)),
    (AGENT, "background;priority=1", Program("agent-3", ProgramClass.BACKGROUND, 1)),
    (AGENT, "normal", AGENT),
])
def test_a_request_may_lower_itself(base, header, expected):
    assert lowered(base, header) == expected


@pytest.mark.parametrize(("base", "header"), [(AGENT, "interactive"), (APP, "interactive; priority=1"),
                                              (AGENT, "normal; priority=3")])
def test_a_request_may_not_raise_itself_unless_admin(base, header):
    with pytest.raises(PermissionDeniedError, match="may only lower itself"):
        lowered(base, header)
    assert lowered(base, header, admin=True).class_.value == header.split(";")[0]


@pytest.mark.parametrize("header", ["urgent", "Background", "background;", "background; prio=1", "normal; priority=-1",
                                    "normal; priority=1001", "normal, background", ""])
def test_a_header_that_does_not_parse_is_a_bad_request(header):
    with pytest.raises(BadRequestError, match="X-ByenatOS-Priority"):
        lowered(APP, header, admin=True)
