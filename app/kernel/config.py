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

    def ensure(self) -> Paths:
        for d in (self.config_dir, self.data_dir, self.cache_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def default(cls) -> Paths:
        home = os.environ.get(HOME_ENV)
        if home:
            root = Path(home).expanduser()
            return cls(root / "config", root / "data", root / "cache")
        import platformdirs

        return cls(
            Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        )


class GatewaySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)


class DiscoverySettings(BaseModel):
    gguf_dirs: list[str] = Field(default_factory=list)  # extra folders to scan for .gguf files
    scan_default_dirs: bool = True  # LM Studio, Hugging Face cache, our own models dir
    probe_local_servers: bool = True  # Ollama 11434, LM Studio 1234, llama.cpp 8080, vLLM 8000
    probe_timeout: float = Field(0.5, gt=0, le=10)
    env_keys: bool = True  # OPENAI_API_KEY & co. become providers
    # preset id → where that server usually listens (see app.kernel.presets)
    local_servers: dict[str, str] = Field(
        default_factory=lambda: {
            "ollama": "http://127.0.0.1:11434",
            "lmstudio": "http://127.0.0.1:1234/v1",
            "llamacpp-server": "http://127.0.0.1:8080/v1",
            "vllm": "http://127.0.0.1:8000/v1",
        }
    )


class Settings(BaseModel):
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
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
