"""`byenatos apps …` as a user runs it."""

from __future__ import annotations

import json

from tests.cli.test_cli import byenatos, one_readable_line


async def test_register_list_limit_revoke(home):
    code, out, err = await byenatos(home, "apps", "register", "My Editor", "--scope", "chat", "--rpm", "30")
    assert code == 0, err
    token = out.splitlines()[0]
    assert token.startswith("byn-") and "shown once" in out and "30 req/min" in out
    code, out, _ = await byenatos(home, "apps", "list", "--json")
    apps = {a["id"]: a for a in json.loads(out)}
    assert apps["my-editor"]["rate_limit_rpm"] == 30 and token not in out
    code, out, _ = await byenatos(home, "apps", "limit", "my-editor", "--rpm", "none", "--daily-cost", "2.5")
    assert code == 0 and "$2.50/day" in out and "req/min" not in out
    code, out, _ = await byenatos(home, "apps", "revoke", "my-editor")
    assert code == 0 and "revoked" in out
    code, out, _ = await byenatos(home, "apps", "list")
    assert "my-editor" not in out


async def test_admin_token_is_stable_and_usage_is_readable(home):
    _, first, _ = await byenatos(home, "apps", "token")
    _, second, _ = await byenatos(home, "apps", "token")
    assert first == second and first.startswith("byn-")
    code, out, _ = await byenatos(home, "apps", "usage")
    assert code == 0 and "no requests" in out


async def test_errors_are_one_readable_line(home):
    code, _, err = await byenatos(home, "apps", "revoke", "ghost")
    assert code == 1 and "no app 'ghost'" in one_readable_line(err)
    await byenatos(home, "apps", "register", "twice")
    code, _, err = await byenatos(home, "apps", "register", "twice")
    assert code == 1 and "already registered" in one_readable_line(err)
