"""Where ByenatOS keeps its files, and the user's settings.

Everything lives in the platform's user dirs (platformdirs) unless `BYENATOS_HOME` points
elsewhere — tests and portable installs use that to get one self-contained folder.
Settings are a small JSON file validated by pydantic; a broken file is reported, not fatal.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from app.kernel.errors import ConfigError

log = logging.getLogger(__name__)

APP_NAME = "byenatos"
DEFAULT_PORT = 8484
HOME_ENV = "BYENATOS_HOME"


@dataclass(frozen=True, slots=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    # What a running instance leaves for others to find (the runtime file). None: beside the
    # data dir, for Paths built by hand from three folders.
    state_dir: Path | None = None

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def database(self) -> Path:
        return self.data_dir / "byenatos.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.enc"

    @property
    def run_dir(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.data_dir / "state"

    @property
    def runtime_file(self) -> Path:
        """Where the running desktop app or `byenatos serve` says how to reach it (its gateway
        address and pid; see app.kernel.runtime_file)."""
        return self.run_dir / "runtime.json"

    def ensure(self) -> Paths:
        for d in (self.config_dir, self.data_dir, self.cache_dir, self.models_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def default(cls) -> Paths:
        home = os.environ.get(HOME_ENV)
        if home:
            root = Path(home).expanduser()
            return cls(root / "config", root / "data", root / "cache", root / "state")
        import platformdirs

        return cls(
            Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)),
        )


class GatewaySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    # Host names accepted besides localhost/127.0.0.1/[::1] (and the bound address): anything
    # else is refused, so a web page cannot reach the gateway through DNS rebinding.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Browser origins (scheme://host[:port]) allowed to call the gateway; others get 403.
    allowed_origins: list[str] = Field(default_factory=list)
    max_body_mb: float = Field(32.0, gt=0, le=1024)  # images as base64 make chat bodies large
    max_json_depth: int = Field(64, ge=4, le=1000)
    audit_prompts: bool = False  # keep the prompt text in the audit log (off: never stored)
    # Serve plain chat completions in the transports' callbacks (app.kernel.gateway.lane): the
    # same checks and bookkeeping at a fraction of the cost. Off: every request takes the
    # general path (for comparison, or if the lane ever misbehaves).
    fast_lane: bool = True
    # Apps may register themselves for `chat` and `hinata:write`; other scopes need the admin token.
    open_registration: bool = True


class DiscoverySettings(BaseModel):
    gguf_dirs: list[str] = Field(default_factory=list)  # extra folders to scan for .gguf files
    scan_default_dirs: bool = True  # LM Studio, Hugging Face cache, our own models dir
    probe_local_servers: bool = True  # Ollama 11434, LM Studio 1234, llama.cpp 8080, vLLM 8000
    probe_timeout: float = Field(0.5, gt=0, le=10)
    env_keys: bool = True  # OPENAI_API_KEY & co. become providers
    # preset id → where that server usually listens (see app.kernel.models.presets)
    local_servers: dict[str, str] = Field(
        default_factory=lambda: {
            "ollama": "http://127.0.0.1:11434",
            "lmstudio": "http://127.0.0.1:1234/v1",
            "llamacpp-server": "http://127.0.0.1:8080/v1",
            "vllm": "http://127.0.0.1:8000/v1",
        }
    )


class ScheduleRule(BaseModel):
    """SCHEDULE trigger: between `start` and `end` (local time, HH:MM; may wrap midnight)
    the alias holds `model`."""

    alias: str = "default"
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    model: str


class WorkloadRule(BaseModel):
    """WORKLOAD trigger: a request on `alias` that says it is a `task` (X-ByenatOS-Task) swaps
    the alias to `model` first."""

    alias: str = "default"
    task: str
    model: str


class SocketSettings(BaseModel):
    swap_on_error: bool = True  # ERROR: a primary that starts failing is swapped for a healthy fallback
    latency_threshold_ms: dict[str, float] = Field(default_factory=dict)  # PERFORMANCE, per alias
    min_available_memory_mb: int | None = Field(None, ge=0)  # RESOURCE: below it, local → lighter/cloud
    schedule: list[ScheduleRule] = Field(default_factory=list)  # SCHEDULE
    workload: list[WorkloadRule] = Field(default_factory=list)  # WORKLOAD
    auto_swap_cooldown_s: float = Field(60.0, ge=0)  # no automatic swap of one alias more often
    # After an automatic swap (ERROR, PERFORMANCE, RESOURCE) the user's model comes back once it
    # has been healthy this long (every probe passed, nothing failed); `auto_return = false`
    # keeps the model swapped in until the user chooses. A schedule's window always ends in a
    # return; WORKLOAD swaps stay (the next task decides).
    auto_return: bool = True
    return_after_s: float = Field(120.0, ge=0)
    probe_interval_s: float = Field(10.0, gt=0)  # active health probes of failing deployments
    memory_budget_mb: int | None = Field(None, ge=64)  # local models resident at once; None: half the RAM
    max_loaded_models: int | None = Field(None, ge=1)


SCHEDULER_POLICIES = ("fifo", "round_robin", "priority", "las")  # app.kernel.scheduler.Policy


class SchedulerSettings(BaseModel):
    """The scheduler for LLM calls (app.kernel.scheduler; docs/scheduler.md): in which order
    calls waiting for a busy model are served."""

    # las: least attained service per program first (the default); fifo, round_robin, priority
    policy: str = "las"
    # A call that has waited this long is served next, whatever its class or policy says.
    starvation_s: float = Field(30.0, gt=0, le=3600)

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        name = v.strip().lower()
        if name not in SCHEDULER_POLICIES:
            raise ValueError(f"unknown scheduler policy {v!r}; use one of {', '.join(SCHEDULER_POLICIES)}")
        return name


class FileAccessSettings(BaseModel):
    """Where the built-in file tools may go beyond an agent's own working folder
    (app.kernel.tools.files; docs/tools.md). Absolute paths or `~/…`; anything else is refused."""

    allowed_folders: list[str] = Field(default_factory=list)  # for every app and agent
    app_folders: dict[str, list[str]] = Field(default_factory=dict)  # app id → its own extra folders

    def folders_for(self, app: str) -> list[Path]:
        return [Path(f).expanduser() for f in (*self.allowed_folders, *self.app_folders.get(app, ()))]


SANDBOX_ISOLATIONS = ("auto", "bubblewrap", "unshare", "rlimits-only")  # app.kernel.tools.sandbox


class SandboxSettings(BaseModel):
    """run_code's sandbox (app.kernel.tools.sandbox): the isolation and the limits of one run."""

    # auto: the strongest that works here (bubblewrap, else unshare -n, else rlimits only); a
    # named one that does not work is an error, never a quiet step down.
    isolation: str = "auto"
    cpu_s: int = Field(10, ge=1, le=3600)  # CPU seconds
    wall_s: float = Field(30.0, gt=0, le=3600)  # wall-clock seconds
    memory_mb: int = Field(512, ge=32, le=65536)  # address space
    output_kb: int = Field(64, ge=1, le=10240)  # stdout and stderr kept, each
    max_processes: int = Field(64, ge=1, le=4096)
    file_mb: int = Field(64, ge=1, le=65536)  # the largest file it may write

    @field_validator("isolation")
    @classmethod
    def _isolation(cls, v: str) -> str:
        if v not in SANDBOX_ISOLATIONS:
            raise ValueError(f"unknown sandbox isolation {v!r}; use one of {', '.join(SANDBOX_ISOLATIONS)}")
        return v


class ApprovalSettings(BaseModel):
    """Tool calls the permission rules say to ask about (app.kernel.tools.approvals;
    docs/permissions.md): how long a request waits for the user before it is a deny."""

    timeout_s: float = Field(120.0, gt=0, le=86400)


class Settings(BaseModel):
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    socket: SocketSettings = Field(default_factory=SocketSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    files: FileAccessSettings = Field(default_factory=FileAccessSettings)  # built-in file tools
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)  # run_code
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)  # tool calls that ask the user
    default_model: str | None = None  # a model id or name; the socket issue replaces this
    request_timeout: float = Field(600.0, gt=0)
    connect_timeout: float = Field(5.0, gt=0)

    @field_validator("default_model")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() or None if v else None


def load_settings(paths: Paths) -> Settings:
    f = paths.settings_file
    if not f.exists():
        return Settings()
    try:
        return Settings.model_validate(json.loads(f.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as e:
        raise ConfigError(f"settings file {f} is not valid: {e}") from None


def save_settings(paths: Paths, settings: Settings) -> None:
    """Write atomically: a crash mid-write must never leave a half file behind."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.settings_file.with_suffix(".json.tmp")
    tmp.write_text(settings.model_dump_json(indent=2), encoding="utf-8")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, paths.settings_file)
