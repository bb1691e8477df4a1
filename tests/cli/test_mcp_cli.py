"""`byenatos mcp …` as a user runs it, through the real entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.cli.test_cli import byenatos, one_readable_line

ROOT = Path(__file__).resolve().parents[2]
TIME = Path(sys.executable).parent / "mcp-server-time"
FAULTY = [sys.executable, "-m", "tests.fakes.mcp_faulty"]


def _config(home: Path) -> dict:
    return json.loads((home / "config" / "mcp.json").read_text())


async def test_add_list_test_remove_a_real_server(home):
    code, out, err = await byenatos(home, "mcp", "add", "time", "--", str(TIME))
    assert code == 0, err
    assert "added MCP server 'time' (stdio)" in out and "mcp__time__<tool>" in out
    assert _config(home) == {"mcpServers": {"time": {"command": str(TIME)}}}
    code, out, _ = await byenatos(home, "mcp", "list")
    assert code == 0 and "time" in out and "stdio" in out and str(TIME) in out
    code, out, err = await byenatos(home, "mcp", "test", "time")
    assert code == 0, err
    assert out.startswith("ok: time is mcp-time") and "2 tools" in out
    assert "mcp__time__get_current_time" in out and "mcp__time__convert_time" in out
    code, out, _ = await byenatos(home, "mcp", "remove", "time")
    assert code == 0 and "removed" in out
    assert _config(home) == {"mcpServers": {}}


async def test_options_and_the_servers_own_flags(home):
    code, _, err = await byenatos(home, "mcp", "add", "f", "--env", "LEVEL=debug", "--timeout", "5", "--cwd",
                                  str(ROOT), "--", *FAULTY, "--banner", "hi")
    assert code == 0, err
    entry = _config(home)["mcpServers"]["f"]
    assert entry["args"] == ["-m", "tests.fakes.mcp_faulty", "--banner", "hi"]
    assert entry["env"] == {"LEVEL": "debug"} and entry["timeout"] == 5 and entry["cwd"] == str(ROOT)


async def test_a_secret_goes_to_the_keyring_not_the_file(home):
    code, out, err = await byenatos(home, "mcp", "add", "gh", "--secret", "GITHUB_TOKEN", "--", "github-mcp",
                                    stdin=b"ghp_verysecret\n")
    assert code == 0, err
    assert "1 secret kept in" in out
    text = (home / "config" / "mcp.json").read_text()
    assert "ghp_verysecret" not in text and "${secret:mcp.gh.env.GITHUB_TOKEN}" in text
    assert b"ghp_verysecret" not in (home / "data" / "secrets.enc").read_bytes()  # encrypted there


async def test_test_says_in_plain_words_what_went_wrong(home):
    cases = {
        "ghost": (["--", "byenatos-no-such-server"], "the command 'byenatos-no-such-server' was not found"),
        "exits": (["--", "sh", "-c", "echo 'missing config file' >&2; exit 4"], "exited with code 4"),
        "notmcp": (["--", "echo", "hello there"], "it wrote 'hello there' where an MCP (JSON-RPC) message"),
        "mute": (["--cwd", str(ROOT), "--", *FAULTY, "--hang-on-start"], "did not answer the MCP handshake within 1 s"),
    }
    for name, (argv, words) in cases.items():
        code, _, err = await byenatos(home, "mcp", "add", name, *argv)
        assert code == 0, err
        code, out, err = await byenatos(home, "mcp", "test", name, "--timeout", "1")
        assert code == 1, (name, out, err)
        assert "Traceback" not in err
        first = err.splitlines()[0]
        assert first.startswith(f"byenatos: {name} failed its test: ") and words in first, (name, err)
    _, _, err = await byenatos(home, "mcp", "test", "exits", "--timeout", "5")
    assert "  | missing config file" in err  # the stderr tail, under the sentence


async def test_bad_input_is_one_readable_line(home):
    code, _, err = await byenatos(home, "mcp", "add", "bad__name", "--", "x")
    assert code == 1 and "is not a server name" in one_readable_line(err)
    code, _, err = await byenatos(home, "mcp", "add", "nothing")
    assert code == 1 and "give the server's command after `--`" in one_readable_line(err)
    code, _, err = await byenatos(home, "mcp", "add", "both", "--url", "http://127.0.0.1:9/mcp", "--", "x")
    assert code == 1 and one_readable_line(err)
    code, _, err = await byenatos(home, "mcp", "add", "h", "--header", "X=1", "--", "x")
    assert code == 1 and "`headers` are for a server at a `url`" in one_readable_line(err)
    code, _, err = await byenatos(home, "mcp", "test", "ghost")
    assert code == 1 and "no MCP server named 'ghost'" in one_readable_line(err)
    code, _, err = await byenatos(home, "mcp", "remove", "ghost")
    assert code == 1 and "no MCP server named 'ghost'" in one_readable_line(err)
    await byenatos(home, "mcp", "add", "twice", "--", "x")
    code, _, err = await byenatos(home, "mcp", "add", "twice", "--", "y")
    assert code == 1 and "exists already" in one_readable_line(err)


async def test_claude_desktops_servers_are_offered_and_imported_only_when_asked(home, tmp_path):
    user = tmp_path / "user"
    claude = user / ".config" / "Claude"
    claude.mkdir(parents=True)
    (claude / "claude_desktop_config.json").write_text(json.dumps({"mcpServers": {
        "Time Server": {"command": str(TIME), "autoApprove": ["get_current_time"]},
        "github": {"command": "github-mcp", "env": {"GITHUB_TOKEN": "ghp_plain_in_claude"}},
    }}))
    env = {"HOME": str(user), "XDG_CONFIG_HOME": str(user / ".config")}
    code, out, _ = await byenatos(home, "mcp", "list", env=env)
    assert code == 0 and "Claude Desktop has 2 server(s) not added here" in out and "byenatos mcp import claude" in out
    code, out, _ = await byenatos(home, "mcp", "import", env=env)  # not a terminal, no --yes: only offered
    assert code == 0 and "time-server" in out and "--yes" in out
    assert not (home / "config" / "mcp.json").exists()
    code, out, err = await byenatos(home, "mcp", "import", "claude", "--yes", env=env)
    assert code == 0, err
    assert "imported 'time-server'" in out and "imported 'github' (1 secret(s) in the keyring)" in out
    text = (home / "config" / "mcp.json").read_text()
    assert "ghp_plain_in_claude" not in text and "autoApprove" not in text
    code, out, _ = await byenatos(home, "mcp", "test", "time-server", env=env)
    assert code == 0 and "mcp__time-server__get_current_time" in out
    code, out, _ = await byenatos(home, "mcp", "import", env=env)
    assert "nothing to import" in out


async def test_serve_is_part_of_the_group(home):
    code, out, _ = await byenatos(home, "mcp", "--help")
    assert code == 0
    for action in ("add", "list", "test", "remove", "import", "serve"):
        assert action in out
