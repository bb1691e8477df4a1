"""Agent files: TOML and YAML, validated with one readable message."""

from __future__ import annotations

import pytest

from app.kernel.agents.process import Priority
from app.kernel.agents.spec import builtin_agents, find_agent, load_agent_file, parse_agent
from app.kernel.errors import BadRequestError, NotFoundError

GOOD = '''
name = "trip-planner"
instructions = "Plan trips."
model = "writing"
priority = "background"
tools = ["memory_search"]
max_children = 2
[limits]
steps = 10
cost = 0.5
[grants]
memory = "shared"
'''


def test_a_toml_agent_file_is_read_whole():
    spec = parse_agent(GOOD)
    assert (spec.name, spec.model, spec.priority, spec.max_children) == ("trip-planner", "writing",
                                                                        Priority.BACKGROUND, 2)
    assert spec.quotas().to_dict() == {"steps": 10, "cost": 0.5}
    assert spec.grants.memory == "shared" and spec.tools == ["memory_search"]


def test_yaml_says_the_same(tmp_path):
    path = tmp_path / "planner.yaml"
    path.write_text("name: planner\ninstructions: Plan.\nlimits:\n  steps: 3\n")
    assert load_agent_file(path).quotas().steps == 3


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"', "instructions: Field required"),
    ('name = "Bad Name"\ninstructions = "i"', "name: lower-case letters"),
    ('name = "x"\ninstructions = "i"\n[limits]\nsteps = 0', "quota 'steps' must be greater than 0"),
    ('name = "x"\ninstructions = "i"\npriority = "urgent"', "priority: Input should be"),
    ('name = "x"\ninstructions = "i"\nwings = 2', "wings: not a setting agent files know"),
    ('name = "x"\ninstructions = "i"\nmax_children = 99', "max_children: Input should be less than or equal to 16"),
    ('name = "x\ninstructions', "not valid TOML"),
])
def test_a_bad_agent_file_gets_one_readable_line(text, message):
    with pytest.raises(BadRequestError) as e:
        parse_agent(text, origin="mine.toml")
    assert str(e.value).startswith("mine.toml: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_shipped_agents_load_and_unknown_names_list_them(tmp_path):
    shipped = builtin_agents()
    assert {"assistant", "research-notes"} <= set(shipped)
    assert shipped["research-notes"].grants.memory == "all" and "memory_search" in shipped["research-notes"].tools
    assert find_agent("assistant") == shipped["assistant"]
    with pytest.raises(NotFoundError, match="shipped agents: assistant, research-notes"):
        find_agent("nope")
    with pytest.raises(NotFoundError, match="no agent file at"):
        find_agent(str(tmp_path / "missing.toml"))
    with pytest.raises(BadRequestError, match="TOML"):
        parse_agent("x", fmt="ini")
