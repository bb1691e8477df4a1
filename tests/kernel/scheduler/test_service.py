"""The shared scheduler: its settings, checked; which program an app's calls run as; its report."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from app.kernel.config import SCHEDULER_POLICIES, SchedulerSettings
from app.kernel.errors import BadRequestError
from app.kernel.scheduler import Policy, Program, ProgramClass, Scheduler


def test_the_settings_name_the_same_policies():
    assert set(SCHEDULER_POLICIES) == {p.value for p in Policy}
    assert Scheduler.from_settings(SchedulerSettings()).policy is Policy.LAS


@pytest.mark.parametrize("bound", [0, -1, math.inf, math.nan, 3601, "30", True])
def test_a_bad_starvation_bound_is_refused(bound):
    with pytest.raises(BadRequestError, match="starvation bound"):
        Scheduler(starvation_s=bound)


def test_configure_checks_everything_before_changing_anything():
    s = Scheduler()
    with pytest.raises(BadRequestError, match="unknown scheduler policy"):
        s.configure(policy="nope", starvation_s=5)
    assert (s.policy, s.starvation_s, s.version) == (Policy.LAS, 30.0, 0)
    s.configure(policy="round_robin")
    assert (s.policy, s.starvation_s, s.version) == (Policy.ROUND_ROBIN, 30.0, 1)


def test_an_app_runs_as_itself_interactive_unless_assigned():
    s = Scheduler()
    assert s.program_for_app("chat") == Program("chat", ProgramClass.INTERACTIVE)
    assert s.program_for_app("chat") is s.program_for_app("chat")  # made once
    agent = Program("agent-12", ProgramClass.BACKGROUND, 1)
    s.assign("research-app", agent)
    assert s.program_for_app("research-app") is agent
    assert s.program_for_app("research-app", header="background; priority=0").priority == 0
    s.unassign("research-app")
    assert s.program_for_app("research-app").class_ is ProgramClass.INTERACTIVE


async def test_snapshot_reports_each_deployment():
    s = Scheduler()
    idle = SimpleNamespace(id="p/idle", limit=4, in_flight=1, preemptible=False, wait_queue=None)
    q = s.new_queue()
    q.push(Program("a", ProgramClass.BACKGROUND))
    busy = SimpleNamespace(id="p/busy", limit=1, in_flight=1, preemptible=False, wait_queue=q)
    snap = s.snapshot([idle, busy])
    assert snap["policy"] == "las" and snap["policies"] == ["fifo", "round_robin", "priority", "las"]
    first, second = snap["deployments"]
    assert first["waiting"] == {"interactive": 0, "normal": 0, "background": 0} and first["running"] == 1
    assert second["waiting"]["background"] == 1 and second["programs"][0]["id"] == "a"


@pytest.mark.parametrize(("scheduler", "words"), [
    ({"policy": "sjf"}, "unknown scheduler policy 'sjf'; use one of fifo, round_robin, priority, las"),
    ({"starvation_s": -1}, "starvation_s"),
])
def test_a_settings_file_with_a_bad_scheduler_is_a_config_error(tmp_path, scheduler, words):
    import json

    from app.kernel.config import Paths, load_settings
    from app.kernel.errors import ConfigError

    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "k")
    paths.config_dir.mkdir()
    paths.settings_file.write_text(json.dumps({"scheduler": scheduler}))
    with pytest.raises(ConfigError, match=words):
        load_settings(paths)
