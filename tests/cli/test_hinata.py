"""`byenatos hinata …` and `byenatos psp …` as a user runs them: real processes, one encrypted store."""

from __future__ import annotations

import json

from tests.cli.test_cli import byenatos, one_readable_line


async def test_add_search_show_forget(home):
    code, out, err = await byenatos(
        home, "hinata", "add", "I prefer tea over coffee", "--tag", "preference", "--id", "tea"
    )
    assert code == 0, err
    assert out.strip() == "created tea"
    code, out, _ = await byenatos(
        home, "hinata", "add", "I prefer tea over coffee", "--tag", "preference", "--id", "tea"
    )
    assert out.strip() == "unchanged tea"
    code, out, _ = await byenatos(home, "hinata", "search", "tea")
    assert code == 0 and "tea" in out.splitlines()[1] and "#preference" in out
    code, out, _ = await byenatos(home, "hinata", "search", "--json", "--tag", "preference")
    assert json.loads(out)["total"] == 1
    code, out, _ = await byenatos(home, "hinata", "show", "tea")
    shown = json.loads(out)
    assert shown["highlight"] == "I prefer tea over coffee" and shown["source"] == "user"
    code, out, err = await byenatos(home, "hinata", "forget", "tea", "nope")
    assert code == 1 and "forgot tea" in out and "no record 'nope'" in err
    code, out, _ = await byenatos(home, "hinata", "search", "tea")
    assert "no records found" in out


async def test_search_answers_a_question_best_first_with_scores(home):
    for rid, text in (
        ("ana", "Ana went to the climbing gym with her brother on Tuesday"),
        ("bag", "Bought a gym bag"),
    ):
        code, _, err = await byenatos(home, "hinata", "add", text, "--id", rid)
        assert code == 0, err
    code, out, err = await byenatos(home, "hinata", "search", "When did Ana go to the climbing gym?")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["SCORE", "ID"] and lines[1].split()[1] == "ana"
    code, out, _ = await byenatos(home, "hinata", "search", "--json", "--phrase", "gym bag")
    assert [d["id"] for d in json.loads(out)["data"]] == ["bag"]


async def test_import_jsonl_and_markdown(home, tmp_path):
    jl = tmp_path / "records.jsonl"
    jl.write_text('{"id": "a", "highlight": "alpha"}\n{"id": "b", "access": "nope", "highlight": "b"}\n')
    code, out, err = await byenatos(home, "hinata", "import", str(jl))
    assert code == 0 and "created 1" in out and "1 errors" in out and "line 2: access" in err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "idea.md").write_text("---\ntags: [ideas]\n---\n# Kite festival\nGo in June")
    code, out, _ = await byenatos(home, "hinata", "import", str(notes))
    assert "created 1" in out
    code, out, _ = await byenatos(home, "hinata", "import", str(notes))
    assert "skipped 1" in out
    code, _, err = await byenatos(home, "hinata", "import", str(tmp_path / "missing"))
    assert code == 1 and "no such file or folder" in one_readable_line(err)


async def test_bad_input_is_one_readable_line(home):
    code, _, err = await byenatos(home, "hinata", "add", "x" * 10_001)
    assert code == 1 and "highlight" in one_readable_line(err)
    code, _, err = await byenatos(home, "hinata", "search", "--since", "someday")
    assert code == 1 and "since" in one_readable_line(err)
    code, _, err = await byenatos(home, "psp", "rules", "edit", "42", "text")
    assert code == 1 and "no Core rule 42" in one_readable_line(err)
    code, _, err = await byenatos(home, "psp", "set", "colour", "blue")
    assert code == 1 and "unknown personalization setting" in one_readable_line(err)


async def test_psp_rules_preview_pause_export_delete(home, tmp_path):
    await byenatos(home, "hinata", "add", "Training for a half marathon in October", "--id", "run")
    code, out, _ = await byenatos(home, "psp", "rules", "add", "Use kilometres, not miles", "--pin")
    assert code == 0 and "added rule 1 (pinned)" in out
    code, out, err = await byenatos(home, "psp", "preview", "how", "should", "I", "train", "--explain")
    assert code == 0, err
    assert "# Personal System Prompt" in out and "Use kilometres, not miles" in out and "half marathon" in out
    assert "LAYER" in out and "run" in out
    code, out, _ = await byenatos(home, "psp", "preview", "--app", "other-app", "train")
    assert "nothing to inject" not in out and "kilometres" in out  # rules apply to every app
    assert "half marathon" not in out  # the user's private record is not another app's
    code, out, _ = await byenatos(home, "psp", "enable", "editor")
    assert "editor: PSP on" in out
    code, out, _ = await byenatos(home, "psp", "pause")
    code, out, _ = await byenatos(home, "psp", "show")
    assert "PAUSED" in out and "editor" in out and "records: 1" in out
    dest = tmp_path / "export.jsonl"
    code, out, _ = await byenatos(home, "psp", "export", str(dest))
    lines = [json.loads(x) for x in dest.read_text().splitlines()]
    assert (
        code == 0
        and {x.get("id") for x in lines} >= {"run"}
        and any(x.get("kind") == "core_rule" for x in lines)
    )
    code, _, err = await byenatos(home, "psp", "delete-all")  # no tty, no --yes: refuses
    assert code == 1 and "--yes" in one_readable_line(err)
    code, out, _ = await byenatos(home, "psp", "delete-all", "--yes")
    assert "deleted 1 records" in out
    code, out, _ = await byenatos(home, "psp", "audit")
    assert "delete_all" in out
