from __future__ import annotations

import pytest

from app.kernel.config import DEFAULT_PORT, Paths, Settings, load_settings, save_settings
from app.kernel.errors import ConfigError


def test_home_env_overrides_platform_dirs(home):
    paths = Paths.default()
    assert paths.config_dir == home / "config"
    assert paths.database == home / "data" / "byenatos.sqlite3"


def test_defaults_when_no_settings_file(home):
    s = load_settings(Paths.default())
    assert s.gateway.host == "127.0.0.1"
    assert s.gateway.port == DEFAULT_PORT


def test_round_trip_and_atomic_write(home):
    paths = Paths.default().ensure()
    s = Settings()
    s.gateway.port = 9123
    s.default_model = "fake/gpt"
    save_settings(paths, s)
    assert load_settings(paths).gateway.port == 9123
    assert load_settings(paths).default_model == "fake/gpt"
    assert not paths.settings_file.with_suffix(".json.tmp").exists()


@pytest.mark.parametrize("content,expected", [
    ("{not json", "not valid"),
    ('{"gateway": {"port": 70000}}', "gateway.port"),
])
def test_broken_settings_file_is_a_readable_error(home, content, expected):
    paths = Paths.default().ensure()
    paths.settings_file.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_settings(paths)
