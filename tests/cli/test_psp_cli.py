"""`byenatos psp rules …` as the help lists it (issue 19: `psp rules list` was "invalid choice")."""

from __future__ import annotations

from tests.cli.test_cli import byenatos


async def test_psp_rules_list_shows_every_rule_with_its_id(home):
    code, out, err = await byenatos(home, "psp", "rules", "list")
    assert code == 0, err
    assert out.strip() == "no Core rules yet"
    await byenatos(home, "psp", "rules", "add", "Use kilometres, not miles", "--pin")
    await byenatos(home, "psp", "rules", "add", "Answer briefly")
    code, out, err = await byenatos(home, "psp", "rules", "list")
    assert code == 0, err
    assert out.splitlines() == ["ID  PINNED  RULE",
                                "1   yes     Use kilometres, not miles",
                                "2           Answer briefly"]
    code, alone, _ = await byenatos(home, "psp", "rules")  # without an action it lists, as before
    assert code == 0 and alone == out


async def test_every_rules_action_in_the_help_is_accepted(home):
    code, out, _ = await byenatos(home, "psp", "rules", "--help")
    assert code == 0
    for action in ("list", "add", "edit", "pin", "unpin", "forget"):
        assert action in out
    code, _, err = await byenatos(home, "psp", "rules", "list", "--help")
    assert code == 0 and "invalid choice" not in err
