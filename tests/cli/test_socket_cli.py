"""`byenatos socket` with no daemon running (it edits the saved sockets) and against a live one."""

from __future__ import annotations

import json

from tests.cli.test_cli import byenatos, one_readable_line


async def add_fake(home, fake, name: str = "srv") -> None:
    code, _, err = await byenatos(home, "models", "add", name, "--kind", "openai", "--url", fake.api_base)
    assert code == 0, err


async def test_show_swap_set_offline(home, openai_upstream):
    await add_fake(home, openai_upstream)
    code, out, _ = await byenatos(home, "socket", "show")
    assert code == 0 and "default" in out and "srv/gpt-fake-large" in out
    code, out, err = await byenatos(home, "socket", "swap", "gpt-fake-mini", "--alias", "code")
    assert code == 0, err
    assert "socket code: None → srv/gpt-fake-mini" in out
    code, out, err = await byenatos(home, "socket", "set", "code", "--fallbacks", "srv/gpt-fake-large",
                                    "--routing", "least_loaded")
    assert code == 0, err
    code, out, _ = await byenatos(home, "socket", "show", "--json")
    code_alias = next(a for a in json.loads(out)["aliases"] if a["alias"] == "code")
    assert code_alias["fallbacks"] == ["srv/gpt-fake-large"] and code_alias["routing"] == "least_loaded"
    code, out, _ = await byenatos(home, "socket", "remove", "code")
    assert code == 0


async def test_bad_socket_input_is_one_readable_line(home, openai_upstream):
    await add_fake(home, openai_upstream)
    for args, expected in (
        (["socket", "swap", "no-such-model"], "unknown model"),
        (["socket", "set", "default", "--routing", "psychic"], "unknown routing strategy"),
        (["socket", "set", "default"], "nothing to change"),
        (["socket", "remove", "default"], "cannot be removed"),
    ):
        code, _, err = await byenatos(home, *args)
        assert code == 1, (args, err)
        assert expected in one_readable_line(err)
