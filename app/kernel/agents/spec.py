"""Agent files: a kernel-run agent declared in TOML (or YAML).

    name = "research-notes"
    description = "Answers from your notes, with citations"
    model = "default"                  # a socket alias or a model id
    priority = "normal"                # interactive | normal | background
    tools = ["memory_search"]
    instructions = '''
    You answer from the user's notes...
    '''
    conversation = false               # true: after an answer, wait for the next message
    max_children = 0                   # agents it may spawn (bounded)

    [limits]                           # quotas; leave one out for no limit
    tokens = 200000
    cost = 0.5
    steps = 40
    tool_calls = 80
    wall_s = 1800

    [grants]
    memory = "own"                     # own | shared | all: whose HiNATA records it may read
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.kernel.agents.process import Priority, Quotas
from app.kernel.errors import BadRequestError, NotFoundError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
BUILTIN_DIR = Path(__file__).resolve().parents[3] / "resources" / "agents"
MAX_CHILDREN = 16  # the most any agent file may ask for


class Grants(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memory: Literal["own", "shared", "all"] = "own"


class AgentSpec(BaseModel):
    """What an agent file declares. Validated with one readable message per bad field."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    instructions: str = Field(min_length=1)
    model: str = "default"
    priority: Priority = Priority.NORMAL
    tools: list[str] = Field(default_factory=list)
    limits: dict[str, float | int] = Field(default_factory=dict)
    grants: Grants = Field(default_factory=Grants)
    conversation: bool = False
    max_children: int = Field(default=0, ge=0, le=MAX_CHILDREN)
    temperature: float | None = Field(default=None, ge=0, le=2)
    summarize_paged: bool = False  # the model summarizes turns paged out of the window (else: verbatim)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("lower-case letters, digits, '.', '_' or '-', at most 64, starting with a letter or digit")
        return value

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Quotas.from_dict(value)
        except BadRequestError as e:
            raise ValueError(str(e)) from None
        return value

    def quotas(self) -> Quotas:
        return Quotas.from_dict(self.limits)


def parse_agent(text: str, *, fmt: str = "toml", origin: str = "agent file") -> AgentSpec:
    """An AgentSpec from the text of an agent file; BadRequestError saying what is wrong."""
    try:
        if fmt == "toml":
            import tomllib

            data = tomllib.loads(text)
        elif fmt in ("yaml", "yml"):
            import yaml  # PyYAML: only for agent files written in YAML

            data = yaml.safe_load(text)
        else:
            raise BadRequestError(f"{origin}: agent files are TOML (.toml) or YAML (.yaml), not {fmt!r}")
    except BadRequestError:
        raise
    except Exception as e:  # tomllib.TOMLDecodeError, yaml.YAMLError: the parser's own words
        raise BadRequestError(f"{origin}: not valid {fmt.upper()}: {e}") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"{origin}: expected a table of settings (name, instructions, …)")
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "not a setting agent files know"
        raise BadRequestError(f"{origin}: {where}: {message}") from None


def load_agent_file(path: str | Path) -> AgentSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"no agent file at {path}") from None
    except OSError as e:
        raise BadRequestError(f"cannot read {path}: {e.strerror}") from None
    return parse_agent(text, fmt=path.suffix.lstrip(".").lower() or "toml", origin=path.name)


def builtin_agents() -> dict[str, AgentSpec]:
    """The agents ByenatOS ships (resources/agents/*.toml), by name."""
    found: dict[str, AgentSpec] = {}
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        spec = load_agent_file(path)
        found[spec.name] = spec
    return found


def find_agent(name_or_path: str) -> AgentSpec:
    """A shipped agent by name, or an agent file by path."""
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in (".toml", ".yaml", ".yml") or path.exists():
        return load_agent_file(path)
    shipped = builtin_agents()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise NotFoundError(
        f"no agent named {name_or_path!r}; shipped agents: {', '.join(sorted(shipped)) or 'none'} "
        "(or give the path of an agent file)")
